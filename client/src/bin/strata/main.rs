//! `strata`: the command-line client for a Strata cluster.
//!
//! # Layout
//!
//! - `main.rs` (this file): the command line (clap derive), the runtime, and turning an error
//!   into one `strata: error: …` line and an exit code.
//! - [`admin`]: `topic create|list|describe|delete` and `cluster describe`.
//! - [`produce`]: stdin lines → records, pipelined through the library's `Producer`.
//! - [`consume`]: records → stdout lines, through the library's `Consumer` (alone, or as a
//!   member of a consumer group with `--group`).
//! - [`groups`]: `group list|describe|reset-offsets|delete`.
//! - [`output`]: the buffered stdout writer, the output format, and how bytes become JSON.
//!
//! Exit codes: 0 success (and a closed stdout, e.g. `| head`), 1 an operation failed, 2 a usage
//! error (clap's), 130 interrupted by Ctrl-C while consuming. The README's "Command-line tool"
//! section documents every command and JSON shape.

mod admin;
mod consume;
mod groups;
mod moves;
mod output;
mod produce;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use strata_client::{Client, ClientConfig, HostAliases};

use crate::output::{Format, Out};

/// Command-line client for Strata: manage topics, produce and consume records.
#[derive(Debug, Parser)]
#[command(name = "strata", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command accepts.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
struct Global {
    /// Broker to bootstrap from (several: comma-separated); a missing port means 9700.
    #[arg(
        long,
        global = true,
        env = "STRATA_BOOTSTRAP",
        default_value = "127.0.0.1:9700",
        value_name = "HOST:PORT"
    )]
    bootstrap: String,
    /// Output format: `text` for people, `json` for programs (one JSON value per line).
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Longest to wait for a TCP connection and handshake with a broker.
    #[arg(long, global = true, default_value_t = 5000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..))]
    connect_timeout_ms: u64,
    /// Longest to wait for a broker's response to a request.
    #[arg(long, global = true, default_value_t = 30_000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout_ms: u64,
    /// DNS names standing for IP addresses, NAME=IP comma-separated, looked up before the system
    /// resolver (for brokers advertising names this machine cannot resolve).
    #[arg(long, global = true, env = "STRATA_HOST_ALIASES", value_name = "NAME=IP,...",
          value_parser = |s: &str| s.parse::<HostAliases>().map_err(|e| e.to_string()))]
    host_aliases: Option<HostAliases>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(admin::TopicCommand),
    /// Describe the cluster: brokers and controller.
    #[command(subcommand)]
    Cluster(admin::ClusterCommand),
    /// Move partitions between brokers.
    #[command(subcommand)]
    Partition(moves::PartitionCommand),
    /// Manage brokers: decommission one before stopping it for good.
    #[command(subcommand)]
    Broker(moves::BrokerCommand),
    /// List, describe, reset and delete consumer groups.
    #[command(subcommand)]
    Group(groups::GroupCommand),
    /// Send one record per line of standard input.
    Produce(produce::ProduceArgs),
    /// Print records from a topic, one per line.
    Consume(consume::ConsumeArgs),
}

/// What a command reports when it did not fail outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Exit 0.
    Done,
    /// Stopped by Ctrl-C: exit 130 as a shell would report it.
    Interrupted,
}

fn main() -> ExitCode {
    // clap prints usage errors and exits 2 itself; `--help` and `--version` exit 0.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    let result = runtime.block_on(run(cli));
    // Connection tasks may still be running; none holds anything worth waiting for.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        // The reader went away (`strata consume … | head`): not an error.
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let mut out = Out::new(cli.global.format);
    let global = &cli.global;
    let outcome = match cli.command {
        Command::Topic(cmd) => admin::topic(global, &mut out, cmd).await.map(|()| Outcome::Done),
        Command::Cluster(cmd) => admin::cluster(global, &mut out, cmd).await.map(|()| Outcome::Done),
        Command::Partition(cmd) => moves::partition(global, &mut out, cmd).await.map(|()| Outcome::Done),
        Command::Broker(cmd) => moves::broker(global, &mut out, cmd).await.map(|()| Outcome::Done),
        Command::Group(cmd) => groups::group(global, &mut out, cmd).await.map(|()| Outcome::Done),
        Command::Produce(args) => produce::run(global, &mut out, args).await.map(|()| Outcome::Done),
        Command::Consume(args) => consume::run(global, &mut out, args).await,
    };
    // Whatever was printed before a failure still reaches the reader.
    let flushed = out.flush();
    let outcome = outcome?;
    flushed?;
    Ok(outcome)
}

/// Prints the error as one line on stderr and returns exit code 1.
fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("strata: error: {}", render(e));
    ExitCode::FAILURE
}

/// The error and its causes on one line, `outer: inner: …`. The client's errors already
/// include their source's text in their own message (`i/o error talking to X: refused`), so a
/// cause whose text the line already ends with is not repeated.
fn render(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    // One line, whatever a broker put in its message.
    line.replace(['\n', '\r'], " ")
}

impl Global {
    fn client_config(&self) -> ClientConfig {
        ClientConfig {
            client_id: Some("strata-cli".to_owned()),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            host_aliases: self.host_aliases.clone().unwrap_or_default(),
            ..ClientConfig::new(&self.bootstrap)
        }
    }

    /// A client that has reached the cluster.
    ///
    /// # Errors
    /// Naming the bootstrap address when no broker answers.
    async fn connect(&self) -> anyhow::Result<Client> {
        let config = self.client_config();
        let addrs = config.bootstrap.join(",");
        // The client bounds each connect and request; this bounds the whole (every bootstrap
        // address tried in turn) so an unreachable cluster fails in predictable time.
        let limit = (config.connect_timeout + config.request_timeout).saturating_mul(2);
        match tokio::time::timeout(limit, Client::connect(config)).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context(format!("cannot reach the cluster at {addrs}"))),
            Err(_) => anyhow::bail!("cannot reach the cluster at {addrs}: no answer within {limit:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn render_does_not_repeat_a_cause_already_in_the_message() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = anyhow::Error::new(io)
            .context("i/o error talking to h:1: refused")
            .context("cannot reach h:1");
        assert_eq!(render(&e), "cannot reach h:1: i/o error talking to h:1: refused");
    }
}

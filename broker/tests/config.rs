//! Loading the broker's configuration from a real file on disk, layered under the environment and
//! flags. The parsing and bounds details are unit-tested in `src/config.rs`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use strata_broker::BrokerOptions;
use strata_broker::config::{self, ConfigError, Origin};
use strata_broker::options::Voter;

fn args(list: &[&str]) -> Vec<OsString> {
    std::iter::once("strata-broker")
        .chain(list.iter().copied())
        .map(OsString::from)
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn file_then_env_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "strata.toml",
        r#"
node_id = 2
data_dir = "from-file"
[listener]
listen = "127.0.0.1:2700"
max_connections = 200
[raft]
tick = "20ms"
"#,
    );
    let file_str = file.to_str().unwrap().to_owned();
    let env = move |k: &str| match k {
        "STRATA_CONFIG" => Some(file_str.clone()),
        "STRATA_NODE_ID" => Some("3".into()),
        "STRATA_LISTENER_LISTEN" => Some("127.0.0.1:3700".into()),
        _ => None,
    };
    let loaded = config::load(args(&["--listen", "127.0.0.1:4700"]), &env).unwrap();
    let o = &loaded.options;
    assert_eq!(loaded.config_file.as_deref(), Some(file.as_path()));
    assert_eq!(o.node_id, 3, "env beats file");
    assert_eq!(o.listen.port(), 4700, "flag beats env and file");
    assert_eq!(o.data_dir, PathBuf::from("from-file"), "file beats default");
    assert_eq!(o.max_connections, 200);
    assert_eq!(o.raft_tick, Duration::from_millis(20));
    assert_eq!(o.http, BrokerOptions::default().http, "default where nothing sets it");

    assert_eq!(loaded.origin("node_id"), Origin::Env("STRATA_NODE_ID"));
    assert_eq!(loaded.origin("listener.listen"), Origin::Flag("--listen"));
    assert_eq!(loaded.origin("data_dir"), Origin::File(file.clone()));
    assert_eq!(loaded.origin("http.listen"), Origin::Default);

    let line = loaded.to_string();
    assert!(line.contains("data_dir=from-file(file)"), "{line}");
    assert!(line.contains("node_id=3(STRATA_NODE_ID)"), "{line}");
    assert!(line.contains("listener.listen=127.0.0.1:4700(--listen)"), "{line}");
}

#[test]
fn config_flag_beats_config_env() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.toml", "node_id = 10\n");
    let b = write(dir.path(), "b.toml", "node_id = 20\n");
    let a_str = a.to_str().unwrap().to_owned();
    let env = move |k: &str| (k == "STRATA_CONFIG").then(|| a_str.clone());
    let loaded = config::load(args(&["--config", b.to_str().unwrap()]), &env).unwrap();
    assert_eq!(loaded.options.node_id, 20);
    assert_eq!(config::load(args(&[]), &env).unwrap().options.node_id, 10);
    let loaded = config::load(args(&["-c", a.to_str().unwrap()]), &no_env).unwrap();
    assert_eq!(loaded.options.node_id, 10);
}

#[test]
fn example_config_file_loads_to_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "strata.toml", config::EXAMPLE_CONFIG);
    let loaded = config::load(args(&["--config", file.to_str().unwrap()]), &no_env).unwrap();
    assert_eq!(loaded.options, BrokerOptions::default());
}

#[test]
fn unknown_key_names_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "typo.toml", "[listener]\nmax_conections = 5\n");
    let e = config::load(args(&["--config", file.to_str().unwrap()]), &no_env).unwrap_err();
    assert!(matches!(e, ConfigError::ParseFile { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("max_conections"), "{text}");
    assert!(text.contains("typo.toml"), "{text}");
    assert!(text.contains("line 2"), "{text}");
}

#[test]
fn bad_value_in_file_names_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bad.toml",
        "[topic_defaults]\nsegment_bytes = \"1 parsec\"\n",
    );
    let text = config::load(args(&["--config", file.to_str().unwrap()]), &no_env)
        .unwrap_err()
        .to_string();
    assert!(text.contains("segment_bytes") && text.contains("bad.toml"), "{text}");
    assert!(text.contains("1 parsec"), "{text}");
}

#[test]
fn out_of_bounds_value_in_file_names_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "big.toml", "[topic_defaults]\npartitions = 20000\n");
    let e = config::load(args(&["--config", file.to_str().unwrap()]), &no_env).unwrap_err();
    match &e {
        ConfigError::Invalid(invalid) => {
            assert_eq!(invalid.key, "topic_defaults.partitions");
            assert_eq!(invalid.value, "20000");
            assert_eq!(invalid.origin, Some(Origin::File(file.clone())));
        }
        other => panic!("{other:?}"),
    }
    let text = e.to_string();
    assert!(
        text.contains("topic_defaults.partitions = 20000") && text.contains("big.toml"),
        "{text}"
    );
}

#[test]
fn missing_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let e = config::load(args(&["--config", missing.to_str().unwrap()]), &no_env).unwrap_err();
    assert!(matches!(e, ConfigError::ReadFile { .. }), "{e:?}");
    assert!(e.to_string().contains("nope.toml"), "{e}");
}

#[test]
fn env_overrides_file_for_cross_key_checks() {
    // The file's frame limit is fine on its own; the environment lowers it below the message
    // limit, and the error says which key and where its value came from.
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "s.toml", "[topic_defaults]\nmax_message_bytes = \"2MiB\"\n");
    let file_str = file.to_str().unwrap().to_owned();
    let env = move |k: &str| match k {
        "STRATA_CONFIG" => Some(file_str.clone()),
        "STRATA_LISTENER_MAX_FRAME_BYTES" => Some("1MiB".into()),
        _ => None,
    };
    let text = config::load(args(&[]), &env).unwrap_err().to_string();
    assert!(text.contains("topic_defaults.max_message_bytes = 2MiB"), "{text}");
    assert!(text.contains("listener.max_frame_bytes (1MiB)"), "{text}");
    assert!(text.contains("s.toml"), "{text}");
    assert!(
        text.contains("listener.max_frame_bytes is from environment variable STRATA_LISTENER_MAX_FRAME_BYTES"),
        "{text}"
    );
}

#[test]
fn listener_conflict_names_both_origins() {
    let env = |k: &str| (k == "STRATA_LISTEN").then(|| "127.0.0.1:9701".to_owned());
    let e = config::load(args(&[]), &env).unwrap_err();
    match &e {
        ConfigError::Invalid(invalid) => {
            assert_eq!(invalid.key, "http.listen");
            assert_eq!(invalid.origin, Some(Origin::Default));
            assert_eq!(invalid.other_key, Some("listener.listen"));
            assert_eq!(invalid.other_origin, Some(Origin::Env("STRATA_LISTEN")));
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("STRATA_LISTEN"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// cluster.voters: file, STRATA_CLUSTER_VOTERS / STRATA_VOTERS, --voters

fn voter(id: u64, address: &str) -> Voter {
    Voter {
        id,
        address: address.into(),
    }
}

#[test]
fn voters_from_file_then_env_then_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "cluster.toml",
        "node_id = 2\n[cluster]\nvoters = \"1@broker-1.example.com:9700,2@broker-2.example.com:9700,3@10.0.0.3:9700\"\n",
    );
    let path = file.to_str().unwrap();

    let loaded = config::load(args(&["--config", path]), &no_env).unwrap();
    assert_eq!(
        loaded.options.voters,
        vec![
            voter(1, "broker-1.example.com:9700"),
            voter(2, "broker-2.example.com:9700"),
            voter(3, "10.0.0.3:9700"),
        ]
    );
    assert_eq!(loaded.origin("cluster.voters"), Origin::File(file.clone()));
    let line = loaded.to_string();
    assert!(
        line.contains(" cluster.voters=1@broker-1.example.com:9700,2@broker-2.example.com:9700,3@10.0.0.3:9700(file) "),
        "{line}"
    );

    // The environment beats the file, under either name.
    for var in ["STRATA_CLUSTER_VOTERS", "STRATA_VOTERS"] {
        let env = move |k: &str| (k == var).then(|| "2@[::1]:9702, 4@[::1]:9704".to_owned());
        let loaded = config::load(args(&["--config", path]), &env).unwrap();
        assert_eq!(
            loaded.options.voters,
            vec![voter(2, "[::1]:9702"), voter(4, "[::1]:9704")]
        );
        assert_eq!(loaded.origin("cluster.voters"), Origin::Env(var));
        let line = loaded.to_string();
        assert!(
            line.contains(&format!(" cluster.voters=2@[::1]:9702,4@[::1]:9704({var}) ")),
            "{line}"
        );
    }

    // A flag beats both.
    let env = |k: &str| (k == "STRATA_VOTERS").then(|| "2@a:1,4@b:1".to_owned());
    let loaded = config::load(args(&["--config", path, "--voters", "2@c:9700"]), &env).unwrap();
    assert_eq!(loaded.options.voters, vec![voter(2, "c:9700")]);
    assert_eq!(loaded.origin("cluster.voters"), Origin::Flag("--voters"));
    assert!(
        loaded.to_string().contains(" cluster.voters=2@c:9700(--voters) "),
        "{loaded}"
    );

    // An empty value unsets the file's list: a cluster of one again.
    let loaded = config::load(args(&["--config", path, "--voters", ""]), &no_env).unwrap();
    assert_eq!(loaded.options.voters, vec![]);
    assert!(
        loaded.to_string().contains(" cluster.voters=unset(--voters) "),
        "{loaded}"
    );
    let env = |k: &str| (k == "STRATA_VOTERS").then(String::new);
    assert_eq!(
        config::load(args(&["--config", path]), &env).unwrap().options.voters,
        vec![]
    );
}

#[test]
fn no_voters_is_a_cluster_of_one() {
    let loaded = config::load(args(&[]), &no_env).unwrap();
    assert_eq!(loaded.options.voters, vec![]);
    assert_eq!(BrokerOptions::default().voters, vec![]);
    assert!(loaded.to_string().contains(" cluster.voters=unset "), "{loaded}");
}

/// Loads with `--voters VALUE` (and `--node-id 1`) and returns the error text, checking it is a
/// bounds error on `cluster.voters` from the flag that quotes the value.
fn voters_error(value: &str) -> String {
    let e = config::load(args(&["--node-id", "1", "--voters", value]), &no_env).unwrap_err();
    match &e {
        ConfigError::Invalid(invalid) => {
            assert_eq!(invalid.key, "cluster.voters", "{e}");
            assert_eq!(invalid.origin, Some(Origin::Flag("--voters")), "{e}");
        }
        other => panic!("{value}: {other:?}"),
    }
    let text = e.to_string();
    assert!(text.starts_with("invalid cluster.voters = \""), "{text}");
    assert!(text.contains("(from flag --voters)"), "{text}");
    text
}

#[test]
fn every_bad_voter_list_names_the_key_and_the_value() {
    for (value, reason) in [
        ("1@a:9700,0@b:9700", "voter 0@b:9700: the id must be at least 1"),
        ("1@a:9700,1@b:9700", "voter id 1 appears more than once"),
        ("1@a:9700,2@a:9700", "address a:9700 appears more than once"),
        ("1@a:9700,2@A:9700", "address A:9700 appears more than once"),
        ("1@a:9700,2@b:0", "voter 2@b:0: port must be 1 ..= 65535"),
        ("1@a:9700,2@b:65536", "voter 2@b:65536: port must be 1 ..= 65535"),
        ("1@a:9700,2@b:http", "voter 2@b:http: port must be 1 ..= 65535"),
        ("1@a:9700,2@b", "voter 2@b: no port"),
        ("1@a:9700,2@:9700", "voter 2@:9700: bad host"),
        ("1@a:9700,2@::1:9700", "voter 2@::1:9700: an IPv6 host needs brackets"),
        (
            "1@b1:1,2@b2:1,3@b3:1,4@b4:1,5@b5:1,6@b6:1,7@b7:1,8@b8:1,9@b9:1,10@b10:1",
            "10 voters; at most 9",
        ),
    ] {
        let text = voters_error(value);
        assert!(text.contains(&format!("{value:?}")), "{value}: {text}");
        assert!(text.contains(reason), "{value}: {text}");
    }
    // Nine is allowed.
    let nine = "1@b1:1,2@b2:1,3@b3:1,4@b4:1,5@b5:1,6@b6:1,7@b7:1,8@b8:1,9@b9:1";
    let loaded = config::load(args(&["--voters", nine]), &no_env).unwrap();
    assert_eq!(loaded.options.voters.len(), 9);
}

#[test]
fn malformed_voters_name_the_flag_variable_or_file() {
    // Not ID@HOST:PORT at all: a usage error for the flag...
    for bad in ["a:9700", "x@a:9700", "1@", "1@a:1,,2@b:1"] {
        let e = config::load(args(&["--voters", bad]), &no_env).unwrap_err();
        let ConfigError::Cli(clap_err) = &e else {
            panic!("{bad}: {e:?}")
        };
        let text = clap_err.to_string();
        assert!(text.contains("--voters") && text.contains("ID@HOST:PORT"), "{text}");
    }
    // ...an error naming the variable and the key for the environment...
    let env = |k: &str| (k == "STRATA_VOTERS").then(|| "1@a:9700;2@b:9700".to_owned());
    let e = config::load(args(&[]), &env).unwrap_err();
    assert!(
        matches!(
            &e,
            ConfigError::Env {
                var: "STRATA_VOTERS",
                key: "cluster.voters",
                ..
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("STRATA_VOTERS=\"1@a:9700;2@b:9700\"") && text.contains("ID@HOST:PORT"),
        "{text}"
    );
    // ...and the key, the line and the file for the file.
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "v.toml", "[cluster]\nvoters = \"1@a:9700,two@b:9700\"\n");
    let e = config::load(args(&["--config", file.to_str().unwrap()]), &no_env).unwrap_err();
    assert!(matches!(e, ConfigError::ParseFile { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("v.toml") && text.contains("voters") && text.contains("line 2") && text.contains("two@b:9700"),
        "{text}"
    );
    // An array is not the syntax: one string, as the flag takes.
    let file = write(dir.path(), "a.toml", "[cluster]\nvoters = [\"1@a:9700\"]\n");
    let e = config::load(args(&["--config", file.to_str().unwrap()]), &no_env).unwrap_err();
    assert!(matches!(e, ConfigError::ParseFile { .. }), "{e:?}");
}

#[test]
fn node_id_must_be_among_the_voters() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "c.toml",
        "[cluster]\nvoters = \"1@a:9700,2@b:9700,3@c:9700\"\n",
    );
    let file_str = file.to_str().unwrap().to_owned();
    let env = move |k: &str| match k {
        "STRATA_CONFIG" => Some(file_str.clone()),
        "STRATA_NODE_ID" => Some("4".into()),
        _ => None,
    };
    let e = config::load(args(&[]), &env).unwrap_err();
    match &e {
        ConfigError::Invalid(invalid) => {
            assert_eq!(invalid.key, "cluster.voters");
            assert_eq!(invalid.origin, Some(Origin::File(file.clone())));
            assert_eq!(invalid.other_key, Some("node_id"));
            assert_eq!(invalid.other_origin, Some(Origin::Env("STRATA_NODE_ID")));
        }
        other => panic!("{other:?}"),
    }
    let text = e.to_string();
    assert!(
        text.contains("node id 4 is not among the voters (ids 1, 2, 3)"),
        "{text}"
    );
    assert!(text.contains("\"1@a:9700,2@b:9700,3@c:9700\""), "{text}");
    assert!(
        text.contains("node_id is from environment variable STRATA_NODE_ID"),
        "{text}"
    );
    assert!(text.contains("c.toml"), "{text}");

    // The default node id 1 is not in this list either.
    let text = config::load(args(&["--voters", "2@b:9700"]), &no_env)
        .unwrap_err()
        .to_string();
    assert!(text.contains("node id 1 is not among the voters (ids 2)"), "{text}");
    // A node that is listed is fine.
    let loaded = config::load(
        args(&["--node-id", "2", "--voters", "1@a:9700,2@b:9700,3@c:9700"]),
        &no_env,
    )
    .unwrap();
    assert_eq!(loaded.options.node_id, 2);
    assert_eq!(loaded.options.voters.len(), 3);
}

#[test]
fn the_binary_rejects_bad_voters_and_documents_the_flag() {
    let bin = env!("CARGO_BIN_EXE_strata-broker");
    let out = std::process::Command::new(bin)
        .args(["--node-id", "4", "--voters", "1@a:9700,2@b:9700,3@c:9700"])
        .env_remove("STRATA_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .starts_with("strata-broker: invalid cluster.voters = \"1@a:9700,2@b:9700,3@c:9700\" (from flag --voters)"),
        "{stderr}"
    );
    assert!(stderr.contains("node id 4 is not among the voters"), "{stderr}");

    let out = std::process::Command::new(bin).arg("--help").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in ["--voters", "cluster.voters", "STRATA_CLUSTER_VOTERS or STRATA_VOTERS"] {
        assert!(help.contains(needle), "{needle} missing from --help:\n{help}");
    }
}

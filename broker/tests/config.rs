//! Loading the broker's configuration from a real file on disk, layered under the environment and
//! flags. The parsing and bounds details are unit-tested in `src/config.rs`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use strata_broker::BrokerOptions;
use strata_broker::config::{self, ConfigError, Origin};

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

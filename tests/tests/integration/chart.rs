//! The Helm chart: lint, every rendering valid against the Kubernetes 1.34 schemas (strict, offline),
//! and a real `helm install` into the API server creating everything.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use cassandra_sink_tests::{env_or, unique_name};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::Client;
use kube::api::Api;

fn chart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/cassandra-sink-operator")
}

fn tool(variable: &str) -> String {
    let path = env_or(variable, "");
    assert!(
        std::path::Path::new(&path).is_file(),
        "{variable} is not set to a file; run: eval \"$(scripts/localenv.sh env)\""
    );
    path
}

fn helm(args: &[&str]) -> String {
    let output = Command::new(tool("HELM"))
        .args(args)
        .output()
        .expect("run helm");
    assert!(
        output.status.success(),
        "helm {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_chart_lints_and_every_rendering_is_valid_kubernetes() {
    let chart = chart();
    let chart = chart.to_str().expect("utf-8 path");
    helm(&["lint", "--strict", chart]);
    let schemas = env_or("KUBECONFORM_SCHEMAS", "");
    let location = format!("{schemas}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json");
    for values in [
        vec![],
        vec!["--set", "watchNamespaces={apps,jobs}"],
        vec![
            "--set",
            "leaderElection.enabled=false",
            "--set",
            "replicaCount=1",
        ],
    ] {
        let mut args = vec!["template", "sink-operator", chart, "--namespace", "ops"];
        args.extend(values.iter().copied());
        let rendered = helm(&args);
        let file = std::env::temp_dir().join(format!("{}.yaml", unique_name("chart")));
        std::fs::write(&file, &rendered).expect("rendered chart");
        let output = Command::new(tool("KUBECONFORM"))
            .args(["-strict", "-summary", "-schema-location", &location])
            .arg(&file)
            .output()
            .expect("run kubeconform");
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && report.contains("Invalid: 0, Errors: 0, Skipped: 0"),
            "{values:?}: {report}"
        );
        std::fs::remove_file(file).ok();
    }
    // values.schema.json refuses a misspelt value.
    let output = Command::new(tool("HELM"))
        .args([
            "template",
            "x",
            chart,
            "--set",
            "leaderElecton.enabled=false",
        ])
        .output()
        .expect("run helm");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("leaderElecton"));
}

#[tokio::test]
async fn helm_install_creates_the_operator_in_the_api_server() -> anyhow::Result<()> {
    cassandra_sink_tests::install_crypto_provider();
    let namespace = unique_name("helm").replace('_', "-");
    let chart = chart();
    let release = "sink-operator";
    helm(&[
        "install",
        release,
        chart.to_str().expect("utf-8 path"),
        "--namespace",
        &namespace,
        "--create-namespace",
        "--set",
        &format!("watchNamespaces={{{namespace}}}"),
    ]);
    let client = Client::try_default().await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let deployment = deployments.get(release).await?;
    let container = &deployment
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod")
        .containers[0];
    assert!(
        container
            .args
            .as_ref()
            .expect("args")
            .contains(&format!("--namespace={namespace}"))
    );
    // Namespaced watch: a Role, no ClusterRole.
    let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(client.clone(), &namespace);
    roles.get(release).await?;
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    assert!(cluster_roles.get_opt(release).await?.is_none());
    helm(&[
        "uninstall",
        release,
        "--namespace",
        &namespace,
        "--wait",
        "--timeout",
        "60s",
    ]);
    tokio::time::timeout(Duration::from_secs(30), async {
        while deployments.get_opt(release).await.ok().flatten().is_some() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await?;
    Ok(())
}

fn kubectl(args: &[&str]) -> (bool, String) {
    let output = Command::new(tool("KUBECTL"))
        .args(args)
        .output()
        .expect("run kubectl");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn plain_manifests_match_the_chart_and_the_api_server_accepts_them() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(root.join("scripts/render-manifests.sh"))
        .arg("--check")
        .output()
        .expect("run scripts/render-manifests.sh");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifests = root.join("deploy/cassandra-sink-operator.yaml");
    // A server-side dry run cannot create objects in a namespace that does not exist yet.
    let (created, report) = kubectl(&["create", "namespace", "cassandra-sink-system"]);
    assert!(created || report.contains("AlreadyExists"), "{report}");
    // Other tests apply the CRD under their own field manager, possibly an older version of it on a
    // long-lived API server: taking the fields over is what an upgrade by `kubectl apply` does too.
    let (accepted, report) = kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "-f",
        manifests.to_str().expect("utf-8"),
    ]);
    assert!(accepted, "{report}");
}

#[test]
fn the_examples_are_accepted_by_the_api_server() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let crd = root.join(cassandra_sink_operator::CRD_PATH);
    let (installed, report) = kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        crd.to_str().expect("utf-8"),
    ]);
    assert!(installed, "{report}");
    let (_, _) = kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/cassandrasinks.cassandra-sink.io",
        "--timeout=30s",
    ]);
    let namespace = unique_name("examples").replace('_', "-");
    let (created, report) = kubectl(&["create", "namespace", &namespace]);
    assert!(created, "{report}");
    for example in ["seed.yaml", "json-object.yaml", "secured.yaml"] {
        let path = root.join("examples").join(example);
        let (accepted, report) = kubectl(&[
            "apply",
            "--server-side",
            "--dry-run=server",
            "-n",
            &namespace,
            "-f",
            path.to_str().expect("utf-8"),
        ]);
        assert!(accepted, "{example}: {report}");
    }
    kubectl(&["delete", "namespace", &namespace, "--wait=false"]);
}

#[test]
fn the_argo_cd_health_check_reports_each_state() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new("lua5.4")
        .arg(root.join("gitops/argocd/test.lua"))
        .output()
        .expect("run lua5.4 (scripts/localenv.sh installs it)");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    assert!(report.contains("10 passed, 0 failed"), "{report}");
}

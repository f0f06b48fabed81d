//! The CLIs are real builds that know the Kubernetes version they work with: kubectl against the API
//! server, helm rendering a chart for the stamped version, kubeconform validating offline.

use std::path::PathBuf;
use std::process::{Command, Output};

use cassandra_sink_tests::{env_or, unique_name};

fn tool(variable: &str) -> PathBuf {
    let path = PathBuf::from(env_or(variable, ""));
    assert!(
        path.is_file(),
        "{variable} is not set to a file ({path:?}); run: eval \"$(scripts/localenv.sh env)\""
    );
    path
}

fn run(program: &PathBuf, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program:?}: {error}"));
    assert!(
        output.status.success(),
        "{program:?} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn kubectl_reports_client_and_server_versions() {
    let kube_version = env_or("KUBE_VERSION", "");
    let output = run(&tool("KUBECTL"), &["version", "--output=json"]);
    let versions: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("kubectl version prints JSON");
    let wanted = format!("v{kube_version}");
    assert_eq!(versions["clientVersion"]["gitVersion"], wanted.as_str());
    assert_eq!(versions["serverVersion"]["gitVersion"], wanted.as_str());
}

#[test]
fn helm_renders_for_the_api_servers_kubernetes_version() {
    let helm = tool("HELM");
    let version = stdout(&run(&helm, &["version", "--short"]));
    assert!(
        version.starts_with("v3."),
        "helm version --short: {version}"
    );

    let chart = std::env::temp_dir().join(unique_name("chart"));
    std::fs::create_dir_all(chart.join("templates")).expect("chart folder");
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: probe\nversion: 0.1.0\n",
    )
    .expect("Chart.yaml");
    std::fs::write(
        chart.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: probe }\n\
         data: { kube: {{ .Capabilities.KubeVersion.Version | quote }} }\n",
    )
    .expect("template");
    let rendered = stdout(&run(
        &helm,
        &["template", "probe", chart.to_str().expect("utf-8 path")],
    ));
    let minor = env_or("KUBE_VERSION", "");
    let minor = minor.rsplit_once('.').map(|(head, _)| head).unwrap_or("");
    assert!(
        rendered.contains(&format!("kube: \"v{minor}.")),
        "helm assumes another Kubernetes version:\n{rendered}"
    );
    std::fs::remove_dir_all(chart).ok();
}

#[test]
fn kubeconform_validates_offline_and_rejects_unknown_fields() {
    let kubeconform = tool("KUBECONFORM");
    let schemas = env_or("KUBECONFORM_SCHEMAS", "");
    let location = format!("{schemas}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json");
    let folder = std::env::temp_dir().join(unique_name("manifests"));
    std::fs::create_dir_all(&folder).expect("manifest folder");
    let good = folder.join("good.yaml");
    let bad = folder.join("bad.yaml");
    std::fs::write(
        &good,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: web }\nspec:\n  selector: { matchLabels: { app: web } }\n  template:\n    metadata: { labels: { app: web } }\n    spec: { containers: [ { name: web, image: web:1 } ] }\n",
    )
    .expect("good manifest");
    std::fs::write(
        &bad,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: web }\nspec:\n  replicaz: 2\n  selector: { matchLabels: { app: web } }\n  template:\n    metadata: { labels: { app: web } }\n    spec: { containers: [ { name: web, image: web:1 } ] }\n",
    )
    .expect("bad manifest");
    let args = |file: &PathBuf| {
        vec![
            "-strict".to_owned(),
            "-summary".to_owned(),
            "-schema-location".to_owned(),
            location.clone(),
            file.to_string_lossy().into_owned(),
        ]
    };
    let accepted = Command::new(&kubeconform)
        .args(args(&good))
        .output()
        .expect("run kubeconform");
    assert!(
        accepted.status.success(),
        "valid Deployment refused: {}{}",
        stdout(&accepted),
        String::from_utf8_lossy(&accepted.stderr)
    );
    assert!(
        stdout(&accepted).contains("Valid: 1"),
        "{}",
        stdout(&accepted)
    );
    let refused = Command::new(&kubeconform)
        .args(args(&bad))
        .output()
        .expect("run kubeconform");
    assert!(
        !refused.status.success() && stdout(&refused).contains("replicaz"),
        "a misspelt field passed: {}",
        stdout(&refused)
    );
    std::fs::remove_dir_all(folder).ok();
}

//! The Kubernetes API server is real: apply a CustomResourceDefinition, then create and read an object
//! of the new kind, with the admin kubeconfig that `scripts/localenv.sh up` writes.

use std::time::Duration;

use cassandra_sink_tests::unique_name;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::core::ApiResource;
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};
use serde_json::json;

const GROUP: &str = "smoke.cassandra-sink.test";

#[tokio::test]
async fn apply_a_crd_then_create_and_read_an_object() -> anyhow::Result<()> {
    cassandra_sink_tests::install_crypto_provider();
    let client = Client::try_default().await.map_err(|error| {
        anyhow::anyhow!("no kube client from KUBECONFIG (run scripts/localenv.sh up): {error}")
    })?;
    let version = client.apiserver_version().await?;
    assert_eq!(version.major, "1", "server reports {version:?}");
    assert!(
        version.git_version.starts_with("v1."),
        "server reports {version:?}"
    );

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd_name = format!("widgets.{GROUP}");
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": crd_name },
        "spec": {
            "group": GROUP,
            "names": { "kind": "Widget", "plural": "widgets", "singular": "widget" },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": {
                        "type": "object",
                        "properties": { "size": { "type": "integer", "minimum": 1 } },
                        "required": ["size"]
                    }}
                }}
            }]
        }
    }))?;
    crds.patch(
        &crd_name,
        &PatchParams::apply("cassandra-sink-tests").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(crds.clone(), &crd_name, conditions::is_crd_established()),
    )
    .await??;

    let namespace = unique_name("smoke").replace('_', "-");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": namespace } }))?,
        )
        .await?;

    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, "v1", "Widget"), "widgets");
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &resource);
    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": "Widget",
        "metadata": { "name": "first" },
        "spec": { "size": 3 }
    }))?;
    widgets.create(&PostParams::default(), &widget).await?;

    let read = widgets.get("first").await?;
    assert_eq!(read.name_any(), "first");
    assert_eq!(read.data["spec"]["size"], json!(3));
    assert!(read.metadata.uid.is_some(), "the server assigns a uid");

    // The schema is enforced by the server: an object that breaks it is refused.
    let invalid: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": "Widget",
        "metadata": { "name": "invalid" },
        "spec": { "size": 0 }
    }))?;
    let refused = widgets.create(&PostParams::default(), &invalid).await;
    assert!(
        matches!(refused, Err(kube::Error::Api(ref status)) if status.code == 422),
        "expected 422 Invalid, got {refused:?}"
    );

    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await?;
    Ok(())
}

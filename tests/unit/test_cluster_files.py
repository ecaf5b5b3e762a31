"""Operators' files: the cluster-launcher config against Ray's own schema, Serve configs and the
KubeRay manifests against Serve's deploy schema, and the app they import builds with their args."""

from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from serve_apps.app import build_app

REPO = Path(__file__).resolve().parents[2]


def test_cluster_launcher_config_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(yaml.safe_load((REPO / "cluster.yaml").read_text()))
    validate_config(config)
    types = config["available_node_types"]
    assert config["head_node_type"] == "head" and types["head"]["resources"] == {"CPU": 0}
    assert types["gpu_worker"]["max_workers"] > types["gpu_worker"]["min_workers"] == 0


def _serve_configs():
    yield "cluster/serve_config.yaml", yaml.safe_load((REPO / "cluster/serve_config.yaml").read_text())
    yield "cluster/serve_config_local.yaml", yaml.safe_load((REPO / "cluster/serve_config_local.yaml").read_text())
    service = yaml.safe_load((REPO / "cluster/kuberay-rayservice.yaml").read_text())
    yield "cluster/kuberay-rayservice.yaml", yaml.safe_load(service["spec"]["serveConfigV2"])


@pytest.mark.parametrize("name,config", list(_serve_configs()), ids=lambda v: v if isinstance(v, str) else "")
def test_serve_configs_validate_and_build(name, config):
    schema = ServeDeploySchema.model_validate(config)
    (app,) = schema.applications
    assert app.import_path == "serve_apps.app:build_app"
    built = build_app(app.args)
    ingress = built._bound_deployment
    model_server = ingress.init_args[0]._bound_deployment
    wants_gpu = bool(app.args.get("use_gpu"))
    assert model_server.ray_actor_options["num_gpus"] == (1 if wants_gpu else 0)
    autoscaling = model_server._deployment_config.autoscaling_config
    assert autoscaling.max_replicas == app.args["max_replicas"]


def test_kuberay_manifests_have_autoscaling_gpu_workers():
    service = yaml.safe_load((REPO / "cluster/kuberay-rayservice.yaml").read_text())
    assert service["apiVersion"] == "ray.io/v1" and service["kind"] == "RayService"
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    (gpu,) = cluster["workerGroupSpecs"]
    assert gpu["maxReplicas"] > gpu["minReplicas"]
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    job = yaml.safe_load((REPO / "cluster/kuberay-rayjob-finetune.yaml").read_text())
    assert job["kind"] == "RayJob" and job["spec"]["entrypoint"].startswith("python -m train_jobs.finetune")


def _deployments(app) -> dict:
    """name -> Deployment for the ingress and everything bound into it."""
    ingress = app._bound_deployment
    found = {ingress.name: ingress}
    for arg in ingress.init_args:
        bound = getattr(arg, "_bound_deployment", None)
        if bound is not None:
            found[bound.name] = bound
    return found


def test_every_deployment_has_coherent_limits_and_autoscaling():
    deployments = _deployments(build_app({}))
    assert set(deployments) == {"Ingress", "ModelServer", "JobManager"}
    for name in ("Ingress", "ModelServer"):
        config = deployments[name]._deployment_config
        autoscaling = config.autoscaling_config
        # The autoscaler's target must be reachable, and waiting requests bounded: overload is answered.
        assert autoscaling is not None and autoscaling.target_ongoing_requests < config.max_ongoing_requests, name
        assert 0 < config.max_queued_requests, name
        assert autoscaling.max_replicas >= autoscaling.min_replicas >= 1, name


def test_grafana_dashboard_reads_metrics_the_server_exports():
    import json
    import re

    from serve_apps.replica.metrics import ServingMetrics

    dashboard = json.loads((REPO / "cluster/grafana-dashboard.json").read_text())
    used = {m for p in dashboard["panels"] for t in p["targets"] for m in re.findall(r"ray_(tsfm_\w+?)(?:_bucket|_sum|_count)?\b", t["expr"])}
    exported = {v._name for v in vars(ServingMetrics()).values() if hasattr(v, "_name")}
    assert used and used <= exported, used - exported

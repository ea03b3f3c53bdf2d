"""``local-ai ray list|stop``: see and stop the backends on the cluster, whichever kernel started them."""

from __future__ import annotations

import json

import click

from .options import ADDRESS_ENV, ray_namespace

address_option = click.option("--ray-address", envvar=ADDRESS_ENV, required=True,
                              help="The Ray cluster (HOST:PORT of the head, or auto).")


def _backends() -> list[tuple[str, object]]:
    import ray
    from ray.util import list_named_actors

    namespace = ray_namespace()
    names = sorted(a["name"] for a in list_named_actors(all_namespaces=True) if a["namespace"] == namespace)
    return [(name, ray.get_actor(name, namespace=namespace)) for name in names]


@click.group("ray")
def ray_group():
    """Backends placed on a Ray cluster (see localai-plugin-ray's README)."""


@ray_group.command("list")
@address_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_backends(ray_address: str, as_json: bool) -> None:
    """List backend actors: model, replica, node, address, kernels attached."""
    import ray

    from .cluster import connect

    connect(ray_address)
    rows = []
    for name, actor in _backends():
        try:
            info = ray.get(actor.info.remote(), timeout=10)
        except Exception as exc:  # pending placement, or dying
            info = {"error": f"{type(exc).__name__}"}
        rows.append({"name": name, **info})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        if "error" in row:
            click.echo(f"{row['name']}\tunavailable ({row['error']})")
        else:
            click.echo(f"{row['name']}\t{row['node_ip']}\t{row['address']}\t{row['state']}\tkernels={row['kernels']}")


@ray_group.command("stop")
@address_option
@click.argument("models", nargs=-1, required=True)
def stop_backends(ray_address: str, models: tuple[str, ...]) -> None:
    """Stop every replica of MODELS now, even while kernels use them (they restart it on demand)."""
    import ray

    from .cluster import connect

    connect(ray_address)
    stopped = 0
    for name, actor in _backends():
        if name.rpartition(":")[0] in models:
            ray.kill(actor, no_restart=True)
            click.echo(f"stopped {name}")
            stopped += 1
    if not stopped:
        raise click.ClickException(f"no backend of {', '.join(models)} runs on the cluster")

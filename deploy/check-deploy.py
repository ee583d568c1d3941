#!/usr/bin/env python3
"""Consistency checks of deploy/ against the worker (run by .ci/validate-deploy).

config      deploy/kubernetes/base/config.toml (the image's and the ConfigMap's) equals
            config/default.toml except for OVERRIDES.
definitions deploy/rabbitmq/definitions.json holds exactly the exchanges, queues (with their
            arguments) and bindings the worker declares (src/broker/topology.rs), named as in
            config/default.toml. The worker has no command that prints its topology, so the
            expected set is written out below from topology.rs; the argument names are also
            read from topology.rs, so an argument added there without this list fails here.
"""
import json
import pathlib
import re
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent

# The deployment's own values, and why: the rest must stay the defaults.
OVERRIDES = {
    ("worker", "work_dir"): "/var/lib/executor-harness/work",  # the state volume
    ("metrics", "listen"): "0.0.0.0:9464",  # probes and Prometheus reach the pod's address
    ("agent", "pi_agent_dir"): "/opt/executor-harness/pi/agent",  # the image's Pi extensions
}


def flatten(table, prefix=()):
    out = {}
    for k, v in table.items():
        if isinstance(v, dict):
            out.update(flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def check_config():
    default = flatten(tomllib.loads((ROOT / "config/default.toml").read_text()))
    deploy = flatten(tomllib.loads((ROOT / "deploy/kubernetes/base/config.toml").read_text()))
    errors = []
    for key in sorted(set(default) | set(deploy)):
        want = OVERRIDES.get(key, default.get(key))
        if key not in deploy:
            errors.append(f"{'.'.join(key)} missing")
        elif key not in default:
            errors.append(f"{'.'.join(key)} is not in config/default.toml")
        elif deploy[key] != want:
            errors.append(f"{'.'.join(key)} = {deploy[key]!r}, expected {want!r}")
    return errors


def expected_topology():
    cfg = tomllib.loads((ROOT / "config/default.toml").read_text())
    t = cfg["amqp"]["topology"]
    # worker::topology: x-consumer-timeout = max job duration + shutdown grace + 15 min.
    timeout = cfg["job"]["max_duration_ms"] + cfg["worker"]["shutdown_grace_ms"] + 15 * 60 * 1000
    exchanges = {
        t["dead_exchange"]: "fanout",
        t["events_exchange"]: "topic",
        t["control_exchange"]: "topic",
    }
    queues = {
        t["dead_queue"]: {},
        t["dead_watch_queue"]: {},
        t["jobs_queue"]: {
            "x-queue-type": "quorum",
            "x-delivery-limit": t["delivery_limit"],
            "x-dead-letter-exchange": t["dead_exchange"],
            "x-consumer-timeout": timeout,  # declared by the worker on RabbitMQ 3.12+
        },
        t["results_queue"]: {},
        t["followups_queue"]: {},
        t["progress_queue"]: {
            "x-max-length": t["progress_max_length"],
            "x-overflow": "drop-head",
        },
    }
    bindings = {
        (t["dead_exchange"], t["dead_queue"], ""),
        (t["dead_exchange"], t["dead_watch_queue"], ""),
        (t["events_exchange"], t["results_queue"], "job.result"),
        (t["events_exchange"], t["followups_queue"], "job.followup"),
        (t["events_exchange"], t["progress_queue"], "job.progress"),
    }
    return exchanges, queues, bindings


def check_definitions():
    errors = []
    exchanges, queues, bindings = expected_topology()
    source = (ROOT / "src/broker/topology.rs").read_text()
    declared_args = set(re.findall(r'"(x-[a-z-]+)"\.into\(\)', source))
    listed_args = {a for args in queues.values() for a in args}
    if declared_args != listed_args:
        errors.append(
            f"topology.rs declares arguments {sorted(declared_args)}, this check lists "
            f"{sorted(listed_args)}: update deploy/check-deploy.py and definitions.json"
        )
    d = json.loads((ROOT / "deploy/rabbitmq/definitions.json").read_text())
    got_x = {x["name"]: x for x in d["exchanges"]}
    if set(got_x) != set(exchanges):
        errors.append(f"exchanges {sorted(got_x)}, expected {sorted(exchanges)}")
    for name, kind in exchanges.items():
        x = got_x.get(name)
        if x and (x["type"], x["durable"], x["auto_delete"], x["arguments"]) != (kind, True, False, {}):
            errors.append(f"exchange {name}: {x}, expected a durable {kind} exchange")
    got_q = {q["name"]: q for q in d["queues"]}
    if set(got_q) != set(queues):
        errors.append(f"queues {sorted(got_q)}, expected {sorted(queues)}")
    for name, args in queues.items():
        q = got_q.get(name)
        if q is None:
            continue
        if (q["durable"], q["auto_delete"]) != (True, False):
            errors.append(f"queue {name} must be durable and not auto-delete")
        if q["arguments"] != args:
            errors.append(f"queue {name}: arguments {q['arguments']}, expected {args}")
    got_b = {(b["source"], b["destination"], b["routing_key"]) for b in d["bindings"]}
    if got_b != bindings:
        errors.append(f"bindings {sorted(got_b)}, expected {sorted(bindings)}")
    vhosts = {v["name"] for v in d["vhosts"]}
    for item in d["queues"] + d["exchanges"] + d["bindings"] + d["permissions"]:
        if item["vhost"] not in vhosts:
            errors.append(f"{item} is in an undeclared vhost")
    return errors


def main():
    failed = False
    for name, check in (("config", check_config), ("definitions", check_definitions)):
        errors = check()
        for e in errors:
            print(f"check-deploy: {name}: {e}")
        print(f"check-deploy: {name}: {'FAILED' if errors else 'ok'}")
        failed |= bool(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

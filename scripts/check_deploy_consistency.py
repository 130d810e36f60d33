#!/usr/bin/env python3
"""Cross-checks deploy/ against the real `subgate` binary (run by scripts/check-deploy.sh).

Schema validators say a manifest is well-formed; this says it fits Subgate: for each place
Subgate runs (the image, compose, both Kubernetes pods, systemd) it asks the real parser,
`subgate check`, for the effective settings under that place's SUBGATE_* overrides, and
compares ports, probe paths, mount paths and stop timeouts with them.

usage: check_deploy_consistency.py SUBGATE_BINARY
Needs PyYAML (installed with yamllint).
"""

import os
import re
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
CONF = os.path.join(DEPLOY, "subgate.conf")
CONFIG_PATH = "/etc/subgate/subgate.conf"
# The final usage flush runs after the drain; one round of control-plane calls times out
# after 5 s (docs/enforcement.md). Every kill timeout must leave at least that.
FINAL_FLUSH_SECONDS = 5

problems = []


def problem(where, message):
    line = f"{where}: {message}"
    if line not in problems:
        problems.append(line)


def seconds(text):
    """A Subgate or Kubernetes/compose/systemd duration: 100ms, 20s, 1m, 1h, or bare seconds."""
    text = str(text).strip()
    match = re.fullmatch(r"(\d+)(ms|s|m|h|min)?", text)
    if not match:
        raise ValueError(f"cannot read the duration {text!r}")
    value, unit = int(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600}[unit]


def conf_value(key):
    """A key's value as written in deploy/subgate.conf (None when unset or commented out)."""
    for line in open(CONF, encoding="utf-8"):
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, value = (part.strip() for part in line.split("=", 1))
            if name == key:
                return value
    return None


def effective(binary, overrides, where):
    """`subgate check` on deploy/subgate.conf with these SUBGATE_* overrides: {key: value}.

    The seller key file is replaced by a temporary one (the real one is a mounted secret),
    unless the overrides name it themselves; any override the parser rejects is a problem.
    """
    with tempfile.TemporaryDirectory() as tmp:
        key_file = os.path.join(tmp, "seller_key")
        with open(key_file, "w") as handle:
            handle.write("am_k_consistency_check\n")
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SUBGATE_")}
        env.update(overrides)
        env["SUBGATE_SELLER_KEY_FILE"] = key_file
        result = subprocess.run([binary, "check", "--config", CONF], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        problem(where, f"`subgate check` refuses its configuration:\n{result.stderr.strip()}")
        return None
    settings = {}
    for line in result.stdout.splitlines():
        if line.startswith("#") or " = " not in line:
            continue
        key, value = line.split(" = ", 1)
        settings[key] = value
    settings["seller_key_file"] = overrides.get("SUBGATE_SELLER_KEY_FILE", conf_value("seller_key_file"))
    return settings


def port_of(host_port):
    return int(host_port.rsplit(":", 1)[1])


def load_all(path):
    with open(path, encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


# MARK: - Kubernetes


def check_kubernetes(binary):
    kube = os.path.join(DEPLOY, "kubernetes")
    (configmap,) = load_all(os.path.join(kube, "configmap.yaml"))
    (secret,) = load_all(os.path.join(kube, "secret.yaml"))
    (service,) = load_all(os.path.join(kube, "service.yaml"))
    with open(CONF, encoding="utf-8") as handle:
        if configmap["data"].get("subgate.conf") != handle.read():
            problem("deploy/kubernetes/configmap.yaml",
                    "data.subgate.conf differs from deploy/subgate.conf; it must carry the file verbatim")
    if "seller_key" not in secret.get("stringData", {}) and "seller_key" not in secret.get("data", {}):
        problem("deploy/kubernetes/secret.yaml", "has no seller_key entry")

    for name, native in (("deployment.yaml", False), ("deployment-native-sidecar.yaml", True)):
        where = f"deploy/kubernetes/{name}"
        (deployment,) = load_all(os.path.join(kube, name))
        pod = deployment["spec"]["template"]["spec"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        sidecars = [c for c in pod.get("initContainers", []) if c.get("restartPolicy") == "Always"]
        containers = pod["containers"]
        subgate = [c for c in sidecars + containers if c["name"] == "subgate"]
        if len(subgate) != 1:
            problem(where, "needs exactly one container named subgate")
            continue
        subgate = subgate[0]
        if native != (subgate in sidecars):
            problem(where, "Subgate must be " + ("an init container with restartPolicy: Always" if native else "a regular container"))
        env = {e["name"]: e["value"] for e in subgate.get("env", [])}
        settings = effective(binary, env, where)
        if settings is None:
            continue
        listen, admin = port_of(settings["listen"]), port_of(settings["admin_listen"])
        ports = {p["name"]: p["containerPort"] for p in subgate.get("ports", [])}

        if ports.get("subgate-http") != listen or ports.get("subgate-admin") != admin:
            problem(where, f"container ports {ports} must name listen ({listen}) and admin_listen ({admin})")
        if not settings["admin_listen"].startswith(("0.0.0.0:", "[::]:")):
            problem(where, f"kubelet probes reach the pod IP, but admin_listen is {settings['admin_listen']}")

        def probe(kind):
            get = subgate.get(kind, {}).get("httpGet", {})
            port = get.get("port")
            return get.get("path"), ports.get(port, port)

        for kind, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
            if probe(kind) != (path, admin):
                problem(where, f"{kind} must GET {path} on the admin port {admin}, not {probe(kind)}")

        mounts = {m["mountPath"]: m["name"] for m in subgate.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}

        def volume_at(directory):
            return volumes.get(mounts.get(directory), {})

        if volume_at(os.path.dirname(CONFIG_PATH)).get("configMap", {}).get("name") != configmap["metadata"]["name"]:
            problem(where, f"the ConfigMap must be mounted at {os.path.dirname(CONFIG_PATH)}")
        key_dir = os.path.dirname(settings["seller_key_file"])
        if volume_at(key_dir).get("secret", {}).get("secretName") != secret["metadata"]["name"]:
            problem(where, f"the Secret must be mounted at {key_dir} (seller_key_file = {settings['seller_key_file']})")
        if settings["usage_journal"] == "off" or "emptyDir" not in volume_at(os.path.dirname(settings["usage_journal"])) \
                and "persistentVolumeClaim" not in volume_at(os.path.dirname(settings["usage_journal"])):
            problem(where, f"usage_journal ({settings['usage_journal']}) must be on a volume")
        if "--config" in subgate.get("args", []) and subgate["args"][subgate["args"].index("--config") + 1] != CONFIG_PATH:
            problem(where, f"--config must be {CONFIG_PATH}")

        grace, drain = seconds(settings["shutdown_grace"]), seconds(settings["drain_delay"])
        termination = pod.get("terminationGracePeriodSeconds", 30)
        seller_stop = 0
        for container in containers:
            if container is subgate:
                continue
            sleep = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            if sleep < (5 if native else drain):
                problem(where, f"container {container['name']} must sleep in preStop for at least the endpoint propagation time")
            seller_stop = max(seller_stop, sleep)
        needed = grace + FINAL_FLUSH_SECONDS + (seller_stop + 10 if native else 0)
        if termination <= needed:
            problem(where, f"terminationGracePeriodSeconds {termination} must exceed {needed:g}s "
                           f"(shutdown_grace {grace:g}s + final flush{' + the seller stopping first' if native else ''})")
        if not native and not 0 < drain < grace:
            problem(where, f"drain_delay ({drain:g}s) must be above 0 for endpoint propagation and below shutdown_grace")
        if subgate.get("resources", {}).get("limits", {}).get("memory") is None or \
                subgate.get("resources", {}).get("requests", {}).get("cpu") is None:
            problem(where, "Subgate needs a CPU request and a memory limit")
        if not subgate.get("securityContext", {}).get("readOnlyRootFilesystem"):
            problem(where, "Subgate's root filesystem should be read-only (the journal is on a volume)")
        if pod.get("enableServiceLinks", True):
            problem(where, "enableServiceLinks must be false (a Service named subgate-… would inject SUBGATE_* variables)")

        selector = service["spec"]["selector"]
        if any(labels.get(k) != v for k, v in selector.items()):
            problem("deploy/kubernetes/service.yaml", f"selector {selector} does not select the pods of {name}")
        for port in service["spec"]["ports"]:
            target = ports.get(port["targetPort"], port["targetPort"])
            if target != listen:
                problem("deploy/kubernetes/service.yaml", f"port {port['port']} targets {target}, not Subgate's listen port {listen}")


# MARK: - Compose


def check_compose(binary):
    where = "deploy/docker-compose.yml"
    (compose,) = load_all(os.path.join(DEPLOY, "docker-compose.yml"))
    services = compose["services"]
    subgate = services.get("subgate", {})
    env = {k: str(v) for k, v in (subgate.get("environment") or {}).items()}
    settings = effective(binary, env, where)
    if settings is None:
        return
    if subgate.get("network_mode") != "service:seller":
        problem(where, "Subgate must share the seller's network namespace (network_mode: service:seller)")
    volumes = subgate.get("volumes", [])
    if f"./subgate.conf:{CONFIG_PATH}:ro" not in volumes:
        problem(where, f"mount ./subgate.conf at {CONFIG_PATH} read-only")
    journal_dir = os.path.dirname(settings["usage_journal"])
    if not any(v.split(":")[1] == journal_dir and not v.startswith(".") for v in volumes):
        problem(where, f"a named volume must hold {journal_dir} (usage_journal)")
    targets = [s.get("target") for s in subgate.get("secrets", []) if isinstance(s, dict)]
    if settings["seller_key_file"] not in targets:
        problem(where, f"the seller key secret must be mounted at {settings['seller_key_file']}")
    stop = seconds(subgate.get("stop_grace_period", "10s"))
    if stop <= seconds(settings["shutdown_grace"]) + FINAL_FLUSH_SECONDS:
        problem(where, f"stop_grace_period {stop:g}s must exceed shutdown_grace + the final flush")
    published = [str(p) for p in services["seller"].get("ports", [])]
    listen, admin = port_of(settings["listen"]), port_of(settings["admin_listen"])
    if not any(p.endswith(f":{listen}") for p in published):
        problem(where, f"the seller service must publish Subgate's listen port {listen}")
    if any(p.endswith(f":{admin}") and not p.startswith("127.0.0.1:") for p in published):
        problem(where, "publish the admin port on 127.0.0.1 only")
    simulator = services.get("simulator", {})
    if simulator.get("command", [None])[0] != "simulate":
        problem(where, "the simulator service must run `subgate simulate`")
    url = settings["control_plane_url"]
    sim_listen = simulator["command"][simulator["command"].index("--listen") + 1]
    if url != f"http://simulator:{port_of(sim_listen)}/api/v1":
        problem(where, f"control_plane_url ({url}) must point at the simulator service")


# MARK: - Dockerfile


def check_dockerfile(settings):
    where = "deploy/Dockerfile"
    text = open(os.path.join(DEPLOY, "Dockerfile"), encoding="utf-8").read()
    required = {
        "RUN scripts/build-release.sh ": "the build must run scripts/build-release.sh (the script CI runs)",
        f"ENV SUBGATE_CONFIG={CONFIG_PATH}": f"SUBGATE_CONFIG must be {CONFIG_PATH}",
        f"COPY deploy/subgate.conf /staging{CONFIG_PATH}": "the image must carry deploy/subgate.conf",
        f'VOLUME ["{os.path.dirname(settings["usage_journal"])}"]': "the journal directory must be a VOLUME",
        'CMD ["/usr/local/bin/subgate", "healthcheck"]': "HEALTHCHECK must run `subgate healthcheck`",
        "STOPSIGNAL SIGTERM": "the stop signal must be SIGTERM (the one Subgate drains on)",
        "USER 65532:65532": "the image must run as a non-root user",
    }
    for needle, why in required.items():
        if needle not in text:
            problem(where, why)
    expose = re.search(r"^EXPOSE (.+)$", text, re.M)
    exposed = set(expose.group(1).split()) if expose else set()
    for key in ("listen", "admin_listen"):
        if str(port_of(settings[key])) not in exposed:
            problem(where, f"EXPOSE must include the {key} port {port_of(settings[key])}")


# MARK: - systemd


def check_systemd(binary):
    where = "deploy/systemd/subgate.service"
    unit = {}
    for line in open(os.path.join(DEPLOY, "systemd", "subgate.service"), encoding="utf-8"):
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            unit.setdefault(key, []).append(value)
    env = dict(v.split("=", 1) for v in unit.get("Environment", []))
    credentials_dir = "/run/credentials/subgate.service"
    env = {k: v.replace("%d", credentials_dir) for k, v in env.items() if k != "SUBGATE_CONFIG"}
    settings = effective(binary, env, where)
    if settings is None:
        return
    if unit.get("ExecStart") != ["/usr/local/bin/subgate run"]:
        problem(where, "ExecStart must be `/usr/local/bin/subgate run`")
    if dict(v.split("=", 1) for v in unit.get("Environment", [])).get("SUBGATE_CONFIG") != CONFIG_PATH:
        problem(where, f"SUBGATE_CONFIG must be {CONFIG_PATH}")
    if unit.get("KillSignal") != ["SIGTERM"]:
        problem(where, "KillSignal must be SIGTERM")
    if "ExecReload" in unit:
        problem(where, "Subgate has no reload; ExecReload must not pretend otherwise")
    stop = seconds(unit.get("TimeoutStopSec", ["90s"])[0])
    if stop <= seconds(settings["shutdown_grace"]) + FINAL_FLUSH_SECONDS:
        problem(where, f"TimeoutStopSec {stop:g}s must exceed shutdown_grace + the final flush")
    state = unit.get("StateDirectory", [""])[0]
    if os.path.dirname(settings["usage_journal"]) != f"/var/lib/{state}":
        problem(where, f"usage_journal {settings['usage_journal']} must be in the StateDirectory /var/lib/{state}")
    if not settings["seller_key_file"].startswith(credentials_dir + "/"):
        problem(where, "seller_key_file must come from LoadCredential (%d)")
    if not settings["admin_listen"].startswith("127.0.0.1:"):
        problem(where, "on a host the admin listener should stay on loopback")
    for key in ("DynamicUser", "NoNewPrivileges"):
        if unit.get(key) != ["yes"]:
            problem(where, f"{key}=yes is required")
    if unit.get("ProtectSystem") != ["strict"]:
        problem(where, "ProtectSystem=strict is required")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 64
    binary = sys.argv[1]
    image = effective(binary, {}, "deploy/subgate.conf")
    if image is not None:
        check_dockerfile(image)
    check_kubernetes(binary)
    check_compose(binary)
    check_systemd(binary)
    if problems:
        print(f"deploy consistency: {len(problems)} problem(s)", file=sys.stderr)
        for line in problems:
            print("  " + line.replace("\n", "\n    "), file=sys.stderr)
        return 1
    print("deploy consistency: image, compose, Kubernetes (2 variants) and systemd agree with `subgate check`")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Checks of the deployment files: docker-compose.yml, deploy/Dockerfile,
.dockerignore, deploy/cluster/docker-compose.yml, deploy/k8s/ingest-job.yaml and
deploy/README.md.

No Docker engine or Kubernetes cluster is needed. YAML checks need PyYAML, which
is not a dependency of the project: they skip with a reason when it is missing.
``docker compose config`` runs only where a Compose CLI is installed.

Every ``rsir-stac`` subcommand and option that these files use must be listed in
``USED_OPTIONS`` below (``test_used_options_are_listed`` scans the files), and
``test_cli_options_exist`` checks the listed options against the real CLI's
``--help``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
CLUSTER = REPO / "deploy" / "cluster" / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
K8S_JOB = REPO / "deploy" / "k8s" / "ingest-job.yaml"
README = REPO / "deploy" / "README.md"
YAML_FILES = [COMPOSE, CLUSTER, K8S_JOB]
ALL_FILES = [COMPOSE, CLUSTER, DOCKERFILE, DOCKERIGNORE, K8S_JOB, README]

# Every rsir-stac subcommand and option used in the deployment files and
# deploy/README.md. Keep it equal to what the files use (checked both ways when
# PyYAML is present); test_cli_options_exist checks it against the CLI.
USED_OPTIONS: dict[str, set[str]] = {
    "ingest": {"--qdrant-url", "--shard"},
    "search": {"--image", "--point-id", "--at", "--bbox", "--qdrant-url"},
    "migrate": {"--index", "--qdrant-url"},
    "serve": {"--host", "--port", "--qdrant-url"},
}
# Subcommands the scanner recognises after "rsir-stac" (a wider set than the
# ones used, so that a typo of an option of any of them is caught).
KNOWN_COMMANDS = ("ingest", "search", "migrate", "serve", "evaluate", "train", "model-info")
# Options every command has; not listed in USED_OPTIONS.
GENERIC_OPTIONS = {"--help", "--version", "--verbose"}

QDRANT_IMAGE_RE = re.compile(r"^qdrant/qdrant:v(\d+)\.(\d+)\.(\d+)(-unprivileged)?$")


# ----------------------------------------------------------------------------- helpers
def _yaml():
    return pytest.importorskip("yaml", reason="PyYAML is not installed (not a project dependency); YAML checks skipped")


def _load(path: Path):
    return _yaml().safe_load(path.read_text())


def _load_all(path: Path) -> list:
    return [d for d in _yaml().safe_load_all(path.read_text()) if d is not None]


_VAR_RE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


def _interpolate(value):
    """Compose-style interpolation with every variable unset: defaults apply, $$ -> $."""
    if isinstance(value, str):
        def repl(m: re.Match) -> str:
            op, arg = m.group(2), m.group(3)
            if op in (":-", "-"):
                return arg
            if op in (":?", "?"):
                raise AssertionError(f"${{{m.group(1)}}} is required (no default): {value!r}")
            return ""

        return _VAR_RE.sub(repl, value).replace("$$", "$")
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    return value


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _command(service: dict) -> list[str]:
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def _healthcheck_ok(service: dict) -> bool:
    hc = service.get("healthcheck") or {}
    test = hc.get("test")
    return bool(test) and not hc.get("disable") and test != ["NONE"]


def _volume_sources(service: dict) -> list[str]:
    out = []
    for v in service.get("volumes") or []:
        out.append(v.get("source", "") if isinstance(v, dict) else str(v).split(":", 1)[0])
    return out


def _named_volumes(service: dict) -> list[str]:
    return [s for s in _volume_sources(service) if s and not s.startswith((".", "/", "~", "$"))]


def _qdrant_services(compose: dict) -> dict[str, dict]:
    return {n: s for n, s in compose["services"].items() if str(s.get("image", "")).startswith("qdrant/qdrant")}


def _container_ports(service: dict) -> set[int]:
    ports = set()
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            ports.add(int(p["target"]))
        else:
            ports.add(int(str(p).rsplit(":", 1)[-1].split("/")[0]))
    return ports


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of deploy/Dockerfile, continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python >= 3.11")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


# ------------------------------------------------------------------------ all files
def test_files_exist():
    missing = [str(p.relative_to(REPO)) for p in ALL_FILES if not p.is_file()]
    assert not missing, f"deployment files missing: {missing}"


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_yaml_parses(path: Path):
    docs = _load_all(path)
    assert docs, f"{path} holds no YAML document"
    assert all(isinstance(d, dict) for d in docs)


# ------------------------------------------------------------------ docker-compose.yml
def test_compose_qdrant_service():
    c = _interpolate(_load(COMPOSE))
    q = c["services"]["qdrant"]
    m = QDRANT_IMAGE_RE.match(q["image"])
    assert m, f"qdrant image {q['image']!r} must be a pinned qdrant/qdrant:vX.Y.Z tag (not latest)"
    assert {6333, 6334} <= _container_ports(q), "REST 6333 and gRPC 6334 must be published"
    targets = {str(v).split(":")[1] for v in q["volumes"]}
    assert {"/qdrant/storage", "/qdrant/snapshots"} <= targets
    assert _healthcheck_ok(q), "qdrant needs a healthcheck for depends_on: service_healthy"
    assert "curl" not in json.dumps(q["healthcheck"]) and "wget" not in json.dumps(q["healthcheck"]), (
        "the qdrant image has neither curl nor wget"
    )
    raw = _load(COMPOSE)["services"]["qdrant"]
    assert "RSIR_QDRANT_API_KEY" in str(_env(raw).get("QDRANT__SERVICE__API_KEY")), (
        "the server's API key must come from RSIR_QDRANT_API_KEY"
    )


def test_compose_named_volumes_declared():
    for path in (COMPOSE, CLUSTER):
        c = _interpolate(_load(path))
        declared = set((c.get("volumes") or {}).keys())
        for name, svc in c["services"].items():
            for vol in _named_volumes(svc):
                assert vol in declared, f"{path.name}: volume {vol!r} of {name} is not declared under volumes:"


def test_compose_rsir_services():
    c = _interpolate(_load(COMPOSE))
    services = c["services"]
    assert "rsir-stac" in services
    rsir = {n: s for n, s in services.items() if "build" in s}
    assert "rsir-stac" in rsir
    for name, svc in rsir.items():
        build = svc["build"]
        assert (REPO / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        assert svc["depends_on"]["qdrant"]["condition"] == "service_healthy", name
        assert _env(svc)["RSIR_QDRANT_URL"] == "http://qdrant:6333", name
        assert "./data:/data:ro" in svc["volumes"], name
        assert svc.get("init") is True, f"{name}: init: true so that python is not PID 1"
    assert _command(services["rsir-stac"])[0] == "ingest"
    serve = [s for s in rsir.values() if _command(s)[:1] == ["serve"]]
    assert serve and 8000 in _container_ports(serve[0]), "a serve service must publish port 8000"


def _compose_vars(path: Path) -> list[tuple[str, str | None]]:
    return [(m.group(1), m.group(2)) for m in _VAR_RE.finditer(path.read_text())]


@pytest.mark.parametrize("path", [COMPOSE, CLUSTER], ids=lambda p: str(p.relative_to(REPO)))
def test_compose_variables_have_defaults_or_docs(path: Path):
    readme = README.read_text()
    bad = sorted({name for name, op in _compose_vars(path) if op not in (":-", "-") and f"`{name}`" not in readme})
    assert not bad, f"{path.name}: variables without a default and not documented in deploy/README.md: {bad}"
    assert _compose_vars(path), "expected ${VAR:-default} settings"


# ---------------------------------------------------------- deploy/cluster compose
def test_cluster_has_three_qdrant_nodes():
    raw = _load(CLUSTER)
    c = _interpolate(raw)
    nodes = _qdrant_services(c)
    assert len(nodes) == 3, f"expected 3 qdrant nodes, found {sorted(nodes)}"
    images = {s["image"] for s in nodes.values()}
    assert len(images) == 1 and QDRANT_IMAGE_RE.match(images.pop()), "all nodes: one pinned qdrant/qdrant tag"
    for name, svc in nodes.items():
        assert _env(svc).get("QDRANT__CLUSTER__ENABLED") == "true", name
        assert _healthcheck_ok(svc), name
    # unique storage per node
    storage = [v for svc in nodes.values() for v in _named_volumes(svc)]
    assert len(storage) == len(set(storage)) and len(storage) >= 3, f"volumes must not be shared: {storage}"
    # one node starts the cluster, the others bootstrap from it; each announces its own p2p uri
    first = [n for n, s in nodes.items() if "--bootstrap" not in _command(s)]
    assert len(first) == 1, f"exactly one node starts the cluster, found {first}"
    for name, svc in nodes.items():
        cmd = _command(svc)
        assert cmd[0] == "./qdrant", name
        assert cmd[cmd.index("--uri") + 1] == f"http://{name}:6335", name
        if name != first[0]:
            assert cmd[cmd.index("--bootstrap") + 1] == f"http://{first[0]}:6335", name
            assert svc["depends_on"][first[0]]["condition"] == "service_healthy", name


def test_cluster_collection_layout():
    c = _interpolate(_load(CLUSTER))
    nodes = _qdrant_services(c)
    clients = [s for s in c["services"].values() if "build" in s]
    assert clients, "the cluster file should carry an rsir-stac service"
    for svc in clients:
        env = _env(svc)
        shards, replicas = int(env["RSIR_QDRANT_SHARDS"]), int(env["RSIR_QDRANT_REPLICAS"])
        assert shards % len(nodes) == 0, "shard_number should be a multiple of the node count"
        assert 2 <= replicas <= len(nodes)
        assert env["RSIR_QDRANT_URL"].split("//")[1].split(":")[0] in nodes
        build = svc["build"]
        assert (CLUSTER.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        for node in nodes:
            assert svc["depends_on"][node]["condition"] == "service_healthy"


def test_qdrant_version_consistent():
    tags = {_interpolate(s["image"]) for path in (COMPOSE, CLUSTER) for s in _qdrant_services(_load(path)).values()}
    assert len(tags) == 1, f"one Qdrant version in every file, found {tags}"
    major, minor = (int(x) for x in QDRANT_IMAGE_RE.match(tags.pop()).groups()[:2])
    assert f"qdrant/qdrant:v{major}.{minor}." in README.read_text(), "deploy/README.md names the pinned version"
    try:
        from importlib.metadata import version

        client = version("qdrant-client")
    except Exception:  # noqa: BLE001
        pytest.skip("qdrant-client is not installed")
    cmaj, cmin = (int(x) for x in client.split(".")[:2])
    # Qdrant: SDK x.y is tested against servers x.(y-2)..x.y; keep the image close.
    assert cmaj == major and abs(cmin - minor) <= 2, (
        f"qdrant image v{major}.{minor} is too far from qdrant-client {client}; bump the image tag"
    )


# ----------------------------------------------------------------- deploy/k8s job
def _job() -> dict:
    jobs = [d for d in _load_all(K8S_JOB) if d.get("kind") == "Job"]
    assert len(jobs) == 1
    return jobs[0]


def test_k8s_indexed_job():
    job = _job()
    assert job["apiVersion"] == "batch/v1"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never", "backoffLimitPerIndex needs restartPolicy: Never"
    assert int(spec["backoffLimitPerIndex"]) >= 1
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    shards = int(env["SHARDS"]["value"])
    assert spec["completions"] == spec["parallelism"] == shards, (
        "completions, parallelism and SHARDS must be equal"
    )
    script = " ".join(container["command"])
    assert container["command"][:2] == ["sh", "-c"]
    assert "rsir-stac ingest" in script
    assert re.search(r'--shard\s+"?\$\{JOB_COMPLETION_INDEX\}/\$\{SHARDS\}"?', script), script
    key = env["RSIR_QDRANT_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert key["name"] and key["key"]
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    for rule in (spec.get("podFailurePolicy") or {}).get("rules", []):
        name = (rule.get("onExitCodes") or {}).get("containerName")
        assert name in (None, container["name"])


def test_k8s_user_matches_dockerfile():
    m = re.search(r"useradd\b[^\n]*--uid\s+(\d+)", DOCKERFILE.read_text())
    assert m, "deploy/Dockerfile should create its user with a fixed --uid"
    assert _job()["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(m.group(1))


# --------------------------------------------------------------------- Dockerfile
def test_dockerfile():
    ins = _dockerfile_instructions()
    froms = [a for i, a in ins if i == "FROM"]
    assert froms and all(f.split()[0] == "python:3.11-slim" for f in froms), froms
    runs = " ".join(a for i, a in ins if i == "RUN")
    torch = re.search(r"\btorch==([\w.+]+)", runs)
    vision = re.search(r"\btorchvision==([\w.+]+)", runs)
    assert torch and vision, "torch and torchvision must be pinned with =="
    assert "download.pytorch.org/whl/cpu" in DOCKERFILE.read_text(), "CPU wheel index expected"
    entry = [a for i, a in ins if i == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["rsir-stac"]
    cmd = [a for i, a in ins if i == "CMD"]
    assert cmd and json.loads(cmd[-1]) == ["--help"]
    user = [a for i, a in ins if i == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0"), "the image must run as a non-root user"

    # the pins must satisfy pyproject.toml, or `pip install .` would replace them
    specifiers = pytest.importorskip("packaging.specifiers")
    requirements = pytest.importorskip("packaging.requirements")
    reqs = {}
    for dep in _pyproject()["project"]["dependencies"]:
        r = requirements.Requirement(dep)
        reqs[r.name] = r.specifier
    for name, pin in (("torch", torch.group(1)), ("torchvision", vision.group(1))):
        assert isinstance(reqs[name], specifiers.SpecifierSet)
        assert reqs[name].contains(pin + "+cpu", prereleases=True), f"{name}=={pin} is outside pyproject's {reqs[name]}"


def test_console_script_matches_entrypoint():
    scripts = _pyproject()["project"]["scripts"]
    assert scripts.get("rsir-stac") == "rsir_stac.cli:main"


def test_dockerignore():
    lines = {ln.strip().rstrip("/") for ln in DOCKERIGNORE.read_text().splitlines()}
    lines.discard("")
    for needed in (".venv", "runs", "rsir-index", ".git", "tests"):
        assert needed in lines, f".dockerignore should exclude {needed}"
    for kept in ("rsir_stac", "pyproject.toml", "*.py", "**/*.py", "*", "README.md"):
        assert kept not in lines, f".dockerignore must not exclude {kept}: the image build needs it"
    if "deploy" in lines:
        assert "!deploy/Dockerfile" in lines


# ---------------------------------------------------------- rsir-stac usage scanning
_INVOCATION_RE = re.compile(
    r"rsir-stac(?::[\w.-]+)?\s+(" + "|".join(map(re.escape, KNOWN_COMMANDS)) + r")\b([^\n]*)"
)
_OPTION_RE = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def _scan_text(text: str) -> dict[str, set[str]]:
    # join shell continuations, also inside YAML comments ("\<newline>#   ...")
    text = re.sub(r"\\\n[ \t]*(?:#[ \t]*)?", " ", text)
    found: dict[str, set[str]] = {}
    for m in _INVOCATION_RE.finditer(text):
        rest = re.split(r"\s#\s", m.group(2), maxsplit=1)[0]  # drop a trailing "  # comment"
        found.setdefault(m.group(1), set()).update(set(_OPTION_RE.findall(rest)) - GENERIC_OPTIONS)
    return found


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)
    elif isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)


def _used_options(with_yaml: bool) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}

    def merge(more: dict[str, set[str]]) -> None:
        for cmd, opts in more.items():
            found.setdefault(cmd, set()).update(opts)

    for path in ALL_FILES:
        merge(_scan_text(path.read_text()))
    if with_yaml:
        for path in YAML_FILES:
            for doc in _load_all(path):
                for s in _strings(doc):
                    merge(_scan_text(s))
        for path in (COMPOSE, CLUSTER):
            for svc in _load(path)["services"].values():
                cmd = _command(svc)
                if "build" in svc and cmd and cmd[0] in KNOWN_COMMANDS:
                    merge({cmd[0]: {c for c in cmd[1:] if c.startswith("--")}})
    return found


def test_used_options_are_listed():
    try:
        import yaml  # noqa: F401

        with_yaml = True
    except ImportError:
        with_yaml = False
    found = _used_options(with_yaml)
    unlisted = {c: sorted(o - USED_OPTIONS.get(c, set())) for c, o in found.items()}
    unlisted = {c: o for c, o in unlisted.items() if o or c not in USED_OPTIONS}
    assert not unlisted, f"add these to USED_OPTIONS (and check they exist in the CLI): {unlisted}"
    if with_yaml:  # without PyYAML the multi-line YAML commands are not all seen
        stale = {c: sorted(o - found.get(c, set())) for c, o in USED_OPTIONS.items()}
        stale = {c: o for c, o in stale.items() if o}
        assert not stale, f"USED_OPTIONS lists options no deployment file uses: {stale}"


# NOTE(lead): this is the real check of USED_OPTIONS against the CLI. It fails
# when a command's --help lacks a listed option, and SKIPS a command whose
# --help exits non-zero with "No such command" (not implemented yet: migrate and
# serve when this was written). Once every command exists, that skip should go.
@pytest.mark.parametrize("command", sorted(USED_OPTIONS))
def test_cli_options_exist(command: str):
    proc = subprocess.run(
        [sys.executable, "-m", "rsir_stac.cli", command, "--help"],
        check=False, capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
    )
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 and "No such command" in out:
        pytest.skip(f"`rsir-stac {command}` is not implemented yet; its options are checked once it is")
    assert proc.returncode == 0, f"`rsir-stac {command} --help` failed:\n{out}"
    missing = sorted(o for o in USED_OPTIONS[command] if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", out))
    assert not missing, f"`rsir-stac {command}` lacks options used in the deployment files: {missing}"


# -------------------------------------------------------------- docker compose config
def _compose_cli() -> list[str] | None:
    for cli in (["docker", "compose"], ["docker-compose"]):
        if not shutil.which(cli[0]):
            continue
        try:
            v = subprocess.run([*cli, "version", "--short"], check=False, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if v.returncode == 0 and not v.stdout.strip().lstrip("v").startswith("1."):
            return cli
    return None


@pytest.mark.parametrize("path", [COMPOSE, CLUSTER], ids=lambda p: str(p.relative_to(REPO)))
def test_docker_compose_config(path: Path):
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Docker Compose v2 CLI here (`docker compose` plugin or docker-compose v2)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RSIR_", "QDRANT_"))}
    proc = subprocess.run([*cli, "-f", str(path), "config", "-q"],
                          check=False, capture_output=True, text=True, timeout=60, env=env, cwd=path.parent)
    err = proc.stderr
    engine = r"Cannot connect to the Docker daemon|docker daemon|permission denied.*docker.sock"
    if proc.returncode != 0 and re.search(engine, err, re.IGNORECASE):
        pytest.skip(f"docker compose config needs an engine here: {err.strip()[:200]}")
    assert proc.returncode == 0, f"docker compose config failed for {path}:\n{err}"


# ------------------------------------------------- schemas, when their packages exist
# Neither package is a project dependency: these run where someone installed them
# (`pip install check-jsonschema kubernetes-validate`) and skip elsewhere.
@pytest.mark.parametrize("path", [COMPOSE, CLUSTER], ids=lambda p: str(p.relative_to(REPO)))
def test_compose_schema(path: Path):
    pytest.importorskip("check_jsonschema", reason="check-jsonschema (vendored compose-spec schema) not installed")
    jsonschema = pytest.importorskip("jsonschema")
    from importlib.resources import files

    schema = json.loads((files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(_load(path)), key=lambda e: [str(p) for p in e.path])
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


@pytest.mark.parametrize("k8s_version", ["1.29.0", "1.33.0"])
def test_k8s_schema(k8s_version: str):
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed")
    for doc in _load_all(K8S_JOB):
        kv.validate(doc, k8s_version, strict=True)  # raises on an invalid or unknown field

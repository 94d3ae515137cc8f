"""The deploy guide (docs/deploy.md), run as a new user would, with Google's network step
replaced.

Every ```sh block of the guide and of the other docs that calls `gcloud` or `bq` runs (the
guide first, then the other pages' commands, then the guide's teardown) in one bash
(`set -euo pipefail`, so an unset variable or a failing command stops it). `gcloud` and `bq`
there are this script: each call goes through the installed SDK's own argument parser, and
a call it refuses fails the guide. What happens after parsing:

- `gcloud run deploy`, `run services update` and `run services describe` run gcloud's real
  command code, with the Cloud Run API replaced by a service kept in a JSON file: the
  changes gcloud builds from the flags are applied to it exactly as gcloud applies them
  before sending them. At the end the service must have one serving container with
  landfall's settings and probes, and the metrics collector beside it.
- Commands whose output the guide reads (`projects describe`, `builds
  get-default-service-account`, `run services describe`) answer with a made-up resource,
  printed by gcloud's own formatter with the flags the guide gives.
- `gcloud config set` runs for real, against a throwaway configuration directory.
- Everything else stops after parsing: its arguments were accepted, nothing is sent.

Run with the Python that gcloud runs on (`gcloud info --format='value(basic.python_location)'`).
"""

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile

SDK = os.environ.get("CLOUDSDK_ROOT_DIR", "/usr/lib/google-cloud-sdk")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
GUIDE = os.path.join(ROOT, "docs", "deploy.md")
# The pages whose commands run after the guide's, with its variables.
OTHER_PAGES = [os.path.join(ROOT, "README.md")] + [
    os.path.join(ROOT, "docs", name)
    for name in ("concepts.md", "operate.md", "extend.md", "costs.md")
]

PROJECT_NUMBER = 123456789012
BUILD_ACCOUNT = f"{PROJECT_NUMBER}-compute@developer.gserviceaccount.com"
# Cloud Run lists the deterministic URL among its URLs; status.url is the hash-based one.
HASH_URL = "https://landfall-x7k2p4q9ra-ew.a.run.app"

SERVING = "landfall"
COLLECTOR = "collector"
SERVING_ENV = {
    "LANDFALL_GCS_BUCKET",
    "LANDFALL_BIGQUERY_PROJECT",
    "LANDFALL_BIGQUERY_DATASET",
    "LANDFALL_AUTH",
    "LANDFALL_OIDC_AUDIENCE",
    "LANDFALL_OIDC_ALLOWED_EMAIL",
    "GOOGLE_CLOUD_PROJECT",
}


def sh_blocks(text):
    """The sh blocks of `text` that call gcloud or bq, in order."""
    blocks = re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)
    return [b for b in blocks if re.search(r"(^|[\s$(])(gcloud|bq) ", b)]


def guide_blocks(guide, rest):
    """The sh blocks that call gcloud or bq, in the order a new user runs them: the deploy
    guide, then the other pages' commands (which use the guide's variables), then the
    guide's teardown."""
    teardown = re.search(r"^## Teardown\n.*?(?=^## |\Z)", guide, flags=re.S | re.M)
    assert teardown, "the deploy guide has no Teardown section"
    teardown = teardown.group(0)
    return sh_blocks(guide.replace(teardown, "")) + sh_blocks(rest) + sh_blocks(teardown)


# ---- one gcloud call --------------------------------------------------------------------


def gcloud_call(argv, state_dir):
    sys.path[0:0] = [os.path.join(SDK, "lib"), os.path.join(SDK, "lib", "third_party")]
    from googlecloudsdk import gcloud_main
    from googlecloudsdk.api_lib.util import apis
    from googlecloudsdk.calliope import backend, display
    from googlecloudsdk.command_lib.run import serverless_operations
    from googlecloudsdk.core import metrics

    service_file = os.path.join(state_dir, "service.json")
    real_commands = {
        "gcloud.config.set",
        "gcloud.run.deploy",
        "gcloud.run.services.update",
        "gcloud.run.services.describe",
    }

    def made_up_answer(dotted_name, args):
        if dotted_name == "gcloud.projects.describe":
            m = apis.GetMessagesModule("cloudresourcemanager", "v1")
            return m.Project(projectId=args.id, projectNumber=PROJECT_NUMBER)
        if dotted_name == "gcloud.builds.get-default-service-account":
            m = apis.GetMessagesModule("cloudbuild", "v1")
            return m.DefaultServiceAccount(
                name="projects/p/locations/global/defaultServiceAccount",
                serviceAccountEmail=f"projects/p/serviceAccounts/{BUILD_ACCOUNT}",
            )
        return None

    def run(self, cli, args):
        """backend.Command.Run, with the command's own Run kept only where it is safe."""
        metrics.Loaded()
        tool_context = {}
        if self._parent_group:
            self._parent_group.RunGroupFilter(tool_context, args)
        command = self._common_type(cli=cli, context=tool_context)
        if self.dotted_name in real_commands:
            resources = command.Run(args)
        else:
            resources = made_up_answer(self.dotted_name, args)
        return display.Displayer(
            command, args, resources, display_info=self.ai.display_info
        ).Display()

    backend.Command.Run = run
    serverless_operations.Connect = lambda *a, **k: contextlib.nullcontext(
        StoredService(service_file)
    )
    from googlecloudsdk.api_lib.run import api_enabler

    api_enabler.check_and_enable_apis = lambda *a, **k: True

    cli = gcloud_main.CreateCLI([])
    try:
        cli.Execute(argv)
    except SystemExit as e:
        return e.code or 0
    return 0


class StoredService:
    """The part of Cloud Run's API the guide's commands use, over one service in a file."""

    def __init__(self, path):
        from googlecloudsdk.api_lib.run import service
        from googlecloudsdk.api_lib.util import apis

        self.path = path
        self.service = service
        self.messages = apis.GetMessagesModule("run", "v1")

    def GetService(self, ref):
        from apitools.base.py import encoding

        if not os.path.exists(self.path):
            return None
        with open(self.path) as f:
            message = encoding.JsonToMessage(self.messages.Service, f.read())
        return self.service.Service(message, self.messages)

    def ReleaseService(self, ref, changes, *args, **kwargs):
        from apitools.base.py import encoding
        from googlecloudsdk.command_lib.run import config_changes

        current = kwargs.get("prefetch") or self.GetService(ref)
        if current is None:
            client = type("Client", (), {"MESSAGES_MODULE": self.messages, "_VERSION": "v1"})
            current = self.service.Service.New(client, ref.namespacesId)
            current.name = ref.servicesId
        updated = config_changes.WithChanges(current, changes)
        region = os.environ["GUIDE_REGION"]
        urls = [f"https://{ref.servicesId}-{PROJECT_NUMBER}.{region}.run.app", HASH_URL]
        updated.annotations["run.googleapis.com/urls"] = json.dumps(urls)
        updated.status.url = HASH_URL
        with open(self.path, "w") as f:
            f.write(encoding.MessageToJson(updated.Message()))
        return updated

    def __getattr__(self, name):
        raise AssertionError(f"the guide's commands call Cloud Run's {name}, which this check does not model")


# ---- one bq call ------------------------------------------------------------------------


def bq_call(argv):
    sys.path[0:0] = [
        os.path.join(SDK, "platform", "bq"),
        os.path.join(SDK, "platform", "bq", "third_party"),
        os.path.join(SDK, "lib", "third_party"),
    ]
    import warnings

    warnings.simplefilter("ignore")
    import bq  # noqa: F401  (registers the commands)
    from frontend import bigquery_command

    bigquery_command.BigqueryCmd._NeedsInit = lambda self: False
    bigquery_command.BigqueryCmd.RunSafely = lambda self, args, kwargs: 0
    from bq import appcommands

    sys.argv = ["bq"] + argv
    sys.modules["__main__"].main = bq.main
    try:
        appcommands.Run()
    except SystemExit as e:
        return e.code or 0
    return 0


# ---- the guide --------------------------------------------------------------------------


SHELL_PRELUDE = r"""
set -euo pipefail
__call() {
  printf '%s\0' "$@" > "$GUIDE_STATE/calls/$(printf %04d "$(ls "$GUIDE_STATE/calls" | wc -l)")"
  if ! "$GUIDE_PYTHON" "$GUIDE_SCRIPT" "$@" 2>"$GUIDE_STATE/stderr"; then
    echo "REFUSED: $*" >&2
    cat "$GUIDE_STATE/stderr" >&2
    return 1
  fi
}
gcloud() { __call gcloud "$@"; }
bq() { __call bq "$@"; }
sleep() { :; }
"""


def run_guide():
    text = open(GUIDE).read()
    rest = "\n".join(open(page).read() for page in OTHER_PAGES if os.path.exists(page))
    blocks = guide_blocks(text, rest)
    assert blocks, "no sh block of the deploy guide calls gcloud or bq"
    with tempfile.TemporaryDirectory() as state:
        os.makedirs(os.path.join(state, "calls"))
        os.makedirs(os.path.join(state, "config"))
        script = SHELL_PRELUDE + "\n".join(blocks)
        region = re.search(r"\bREGION=(\S+)", text).group(1)
        env = dict(
            os.environ,
            GUIDE_STATE=state,
            GUIDE_PYTHON=sys.executable,
            GUIDE_SCRIPT=os.path.abspath(__file__),
            GUIDE_REGION=region,
            CLOUDSDK_CONFIG=os.path.join(state, "config"),
            CLOUDSDK_CORE_DISABLE_PROMPTS="1",
            CLOUDSDK_CORE_DISABLE_USAGE_REPORTING="1",
            CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK="1",
        )
        shell = subprocess.run(
            ["bash", "-c", script], cwd=os.path.join(HERE, ".."), env=env,
            capture_output=True, text=True,
        )
        calls = sorted(os.listdir(os.path.join(state, "calls")))
        print(f"{len(calls)} gcloud and bq commands from {len(blocks)} blocks of the docs")
        if shell.returncode != 0:
            sys.stdout.write(shell.stdout)
            sys.stderr.write(shell.stderr)
            sys.exit(f"the deploy guide stops (exit {shell.returncode})")
        for line in shell.stdout.splitlines():
            print("  guide says:", line)
        # The guide's own check of the service URL, answered by gcloud's formatter.
        assert "landfall answers at https://" in shell.stdout, "the guide's URL check fails"
        check_service(json.load(open(os.path.join(state, "service.json"))))
    print("deploy guide: every command parsed; one serving container beside the collector")


def check_service(service):
    template = service["spec"]["template"]
    containers = template["spec"]["containers"]
    names = [c.get("name", "") for c in containers]
    assert sorted(names) == sorted([SERVING, COLLECTOR]), f"containers: {names}"
    serving = [c for c in containers if c.get("ports")]
    assert [c["name"] for c in serving] == [SERVING], f"Cloud Run wants exactly one container with a port: {names}"
    landfall, collector = (next(c for c in containers if c["name"] == n) for n in (SERVING, COLLECTOR))
    env = {e["name"] for e in landfall.get("env", [])}
    assert SERVING_ENV <= env, f"landfall lacks {sorted(SERVING_ENV - env)}"
    assert landfall["startupProbe"]["httpGet"]["path"] == "/readyz", landfall.get("startupProbe")
    assert landfall["livenessProbe"]["httpGet"]["path"] == "/healthz", landfall.get("livenessProbe")
    assert "cloud-run-gmp-sidecar" in collector["image"], collector["image"]
    depends = json.loads(template["metadata"]["annotations"]["run.googleapis.com/container-dependencies"])
    assert depends.get(COLLECTOR) == [SERVING], f"collector starts before landfall: {depends}"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "gcloud":
        sys.exit(gcloud_call(sys.argv[2:], os.environ["GUIDE_STATE"]))
    if len(sys.argv) > 1 and sys.argv[1] == "bq":
        sys.exit(bq_call(sys.argv[2:]))
    run_guide()


if __name__ == "__main__":
    main()

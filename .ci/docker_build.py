#!/usr/bin/env python3
"""Replays a Dockerfile's build without a container engine (none runs on these machines, and
base images cannot be pulled here), then starts its runtime stage the way the image would.

Each stage gets a fresh folder as its root filesystem. COPY takes exactly the files the real
build would see: from the build context after .dockerignore, or from an earlier stage's folder.
RUN executes the same shell commands there, with the stage's ENV and WORKDIR, on this machine's
toolchain, which must be the one the `rust:` base image names. The last stage is then started
as ENTRYPOINT + CMD with its ENV, PORT set and its USER's uid, and `/healthz` must answer.

Caches that the real build keeps in layers live outside the repository, so that a clean clone
reuses them: tools installed with `cargo install` and the compiled dependencies (the cooked
layer). Usage: docker_build.py [--dockerfile PATH] [--context DIR] [--work DIR]
"""

import argparse
import fnmatch
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CACHE = Path(os.environ.get("LANDFALL_CI_CACHE", Path.home() / ".cache" / "landfall-ci"))
NONROOT_UID = 65532  # distroless's `nonroot`


def fail(message):
    print(f"docker build (replayed): FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def log(message):
    print(f"docker build (replayed): {message}", file=sys.stderr, flush=True)


def instructions(dockerfile):
    """(instruction, argument) pairs, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    pairs = []
    for line in logical:
        word, _, rest = line.partition(" ")
        pairs.append((word.upper(), rest.strip()))
    return pairs


def ignore_patterns(context):
    path = context / ".dockerignore"
    if not path.exists():
        return []
    patterns = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip("/"))
            patterns.append((negated, pattern))
    return patterns


def ignored(relative, patterns):
    """Docker's rule: the last pattern matching the path, or a folder above it, decides."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for negated, pattern in patterns:
        regex_pattern = pattern.replace("**/", "*/").replace("/**", "/*")
        if any(fnmatch.fnmatchcase(c, pattern) or fnmatch.fnmatchcase(c, regex_pattern) for c in candidates):
            verdict = not negated
    return verdict


def context_files(context):
    patterns = ignore_patterns(context)
    files = []
    for root, dirs, names in os.walk(context):
        rel_root = os.path.relpath(root, context)
        keep = []
        for d in dirs:
            rel = d if rel_root == "." else f"{rel_root}/{d}"
            if not ignored(rel, patterns):
                keep.append(d)
        dirs[:] = keep
        for name in names:
            rel = name if rel_root == "." else f"{rel_root}/{name}"
            if not ignored(rel, patterns):
                files.append(rel)
    return sorted(files)


class Stage:
    def __init__(self, root, env, workdir="/", base=None):
        self.root, self.env, self.workdir, self.base = root, dict(env), workdir, base
        self.user, self.entrypoint, self.cmd, self.expose = None, [], [], []

    def path(self, absolute):
        return self.root / absolute.lstrip("/")

    def resolve(self, target):
        return self.path(target if target.startswith("/") else f"{self.workdir}/{target}")


def substitute(text, variables):
    for name, value in variables.items():
        text = text.replace("${" + name + "}", value).replace("$" + name, value)
    return text


def rust_toolchain_matches(image):
    tag = image.split(":", 1)[1] if ":" in image else "latest"
    version = tag.split("-")[0]
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True, check=True).stdout
    if not rustc.startswith(f"rustc {version}"):
        fail(f"the Dockerfile builds with {image}, this machine has {rustc.strip()}")
    log(f"{image}: replayed on this machine's {rustc.strip()}")


def context_sources(source, files):
    """What `COPY source` takes from the context: (file, path relative to the target)."""
    pattern = os.path.normpath(source)
    if pattern == ".":
        return [(f, f) for f in files], True
    inside = [(f, os.path.relpath(f, pattern)) for f in files if f.startswith(pattern + "/")]
    if inside:
        return inside, True
    matched = [(f, os.path.basename(f)) for f in files if fnmatch.fnmatchcase(f, pattern)]
    return matched, len(matched) > 1 or any(c in pattern for c in "*?[")


def copy(stage, argument, context, files, stages):
    words = shlex.split(argument)
    origin = None
    while words and words[0].startswith("--"):
        flag = words.pop(0)
        if flag.startswith("--from="):
            origin = stages[flag.split("=", 1)[1]]
    *sources, destination = words
    target = stage.resolve(destination)
    into_folder = destination.endswith("/") or len(sources) > 1
    for source in sources:
        if origin is not None:
            path = origin.resolve(source)
            if not path.exists():
                fail(f"COPY --from: {source} does not exist in that stage")
            picked, folder = [(path, path.name)], path.is_dir()
        else:
            found, folder = context_sources(source, files)
            if not found:
                fail(f"COPY {source}: not in the build context (after .dockerignore)")
            picked = [(context / f, relative) for f, relative in found]
        for path, relative in picked:
            if path.is_dir():
                shutil.copytree(path, target, symlinks=True, dirs_exist_ok=True)
                continue
            destination_file = target / relative if (folder or into_folder) else target
            destination_file.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination_file)


def run(stage, command):
    cwd = stage.resolve(".")
    cwd.mkdir(parents=True, exist_ok=True)
    log(f"RUN {command}")
    started = time.time()
    result = subprocess.run(["bash", "-c", command], cwd=cwd, env=stage.env)
    if result.returncode != 0:
        fail(f"RUN {command} exited {result.returncode}")
    log(f"  done in {time.time() - started:.0f} s")


def build(dockerfile, context, work):
    files = context_files(context)
    for forbidden in ("target/", ".git/"):
        leaked = [f for f in files if f.startswith(forbidden)]
        if leaked:
            fail(f"{forbidden} is in the build context ({len(leaked)} files): fix .dockerignore")
    size = sum((context / f).stat().st_size for f in files)
    log(f"build context: {len(files)} files, {size / 1024:.0f} KiB (no target/, no .git/)")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    variables, stages, stage, count = {}, {}, None, 0
    for word, argument in instructions(dockerfile):
        argument = substitute(argument, variables)
        if word == "ARG":
            name, _, default = argument.partition("=")
            variables.setdefault(name, default)
        elif word == "FROM":
            image, _, alias = argument.partition(" AS ")
            image = image.strip()
            root = work / f"stage-{count}"
            count += 1
            if image in stages:
                parent = stages[image]
                shutil.copytree(parent.root, root, symlinks=True)
                stage = Stage(root, parent.env, parent.workdir, parent.base)
            else:
                root.mkdir()
                env = dict(os.environ)
                if image.startswith("rust:"):
                    rust_toolchain_matches(image)
                    # The image's CARGO_HOME/bin is on PATH; tools installed there persist
                    # in this cache, as they would in a cached layer.
                    tools = CACHE / "cargo-install"
                    env["CARGO_INSTALL_ROOT"] = str(tools)
                    env["PATH"] = f"{tools / 'bin'}:{env['PATH']}"
                else:
                    env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
                    (root / "tmp").mkdir(mode=0o1777)
                    os.chmod(root / "tmp", 0o1777)
                stage = Stage(root, env, "/", image)
            stage.name = alias.strip() or str(count - 1)
            stages[stage.name] = stage
            stages[str(count - 1)] = stage
            log(f"FROM {image}{' AS ' + alias.strip() if alias else ''}")
        elif word == "WORKDIR":
            stage.workdir = argument if argument.startswith("/") else f"{stage.workdir}/{argument}"
            workdir = stage.path(stage.workdir)
            workdir.mkdir(parents=True, exist_ok=True)
            if stage.base and stage.base.startswith("rust:") and not (workdir / "target").exists():
                # cargo's output in this stage is kept like the cached layer that would hold
                # it: the cooked dependencies survive a clean clone.
                (CACHE / "target").mkdir(parents=True, exist_ok=True)
                (workdir / "target").symlink_to(CACHE / "target")
        elif word == "ENV":
            for pair in shlex.split(argument):
                key, _, value = pair.partition("=")
                stage.env[key] = value
        elif word == "COPY":
            copy(stage, argument, context, files, stages)
        elif word == "RUN":
            run(stage, argument)
        elif word == "USER":
            stage.user = argument
        elif word == "ENTRYPOINT":
            stage.entrypoint = json.loads(argument)
        elif word == "CMD":
            stage.cmd = json.loads(argument)
        elif word == "EXPOSE":
            stage.expose.append(argument)
        else:
            fail(f"this replay does not know {word}")
    return stage


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(final):
    """Starts the runtime stage as its image would: ENTRYPOINT + CMD, its ENV, PORT, its USER."""
    if not final.entrypoint:
        fail("the runtime stage has no ENTRYPOINT")
    program = final.path(final.entrypoint[0])
    if not program.exists():
        fail(f"{final.entrypoint[0]} is not in the runtime stage")
    env = {}
    for key, value in final.env.items():
        # Paths inside the image's own /tmp live in the stage's folder.
        env[key] = str(final.path(value)) if value.startswith("/tmp/") else value
    port = free_port()
    env["PORT"] = str(port)
    command = [str(program), *final.entrypoint[1:], *final.cmd]
    if final.user and os.geteuid() == 0:
        command = ["setpriv", f"--reuid={NONROOT_UID}", f"--regid={NONROOT_UID}", "--clear-groups", *command]
    log(f"starting {' '.join(final.entrypoint + final.cmd)} as {final.user or 'root'} with PORT={port}")
    process = subprocess.Popen(command, env=env, cwd=final.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            if process.poll() is not None:
                fail(f"the runtime stage exited {process.returncode}:\n{process.stdout.read().decode()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                    body = json.load(answer)
                    if answer.status == 200 and body == {"status": "ok"}:
                        log(f"/healthz answered {body} on PORT {port}")
                        break
            except OSError:
                time.sleep(0.2)
        else:
            fail("/healthz never answered")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            log(f"/readyz answered {answer.status}")
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
        output = process.stdout.read().decode()
        if code != 0:
            fail(f"SIGTERM: exit {code}\n{output}")
        first = json.loads(output.splitlines()[0])
        if "severity" not in first:
            fail(f"the image's logs are not Cloud Logging JSON: {first}")
        log("SIGTERM: exit 0; logs are Cloud Logging JSON")
    finally:
        if process.poll() is None:
            process.kill()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dockerfile", default="Dockerfile")
    parser.add_argument("--context", default=".")
    parser.add_argument("--work", default="target/docker-replay")
    args = parser.parse_args()
    context = Path(args.context).resolve()
    final = build(Path(args.dockerfile).resolve(), context, Path(args.work).resolve())
    binary = final.path(final.entrypoint[0]) if final.entrypoint else None
    if binary and binary.exists():
        log(f"runtime stage: {final.base}, {final.entrypoint[0]} {binary.stat().st_size / 1e6:.1f} MB")
    start(final)
    log("OK")


if __name__ == "__main__":
    main()

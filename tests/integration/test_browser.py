"""The web pages in a real browser: starts the stack, then runs
tests/browser/walk.js (playwright-core driving Debian's headless
/usr/bin/chromium) through register -> confirm -> login -> dashboard ->
revoke -> logout, then admin login -> admin dashboard -> admin logout,
in English and Russian. Screenshots are saved under the
build directory's tests/artifacts/browser/. The walk fails on console
errors, page errors, failed requests and CSP violations.

playwright-core is installed with `npm ci` (from tests/browser's
package-lock.json) into the build directory when no node_modules exists
yet, so the source tree stays untouched (VPATH and distcheck builds).
"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BINARY, SRCDIR, Stack, run_cli, run_tests  # noqa: E402

BROWSER_SRC = os.path.join(SRCDIR, "tests", "browser")
CHROMIUM = os.environ.get("VS_CHROMIUM", "/usr/bin/chromium")
ADMIN_USER = "walk-admin"
ADMIN_PASS = "walk-admin-password"


def build_dir():
    """Where make check runs: the binary's directory (VS_BINARY is
    absolute there), else the current one."""
    if os.path.sep in BINARY:
        return os.path.dirname(os.path.abspath(BINARY))
    return os.getcwd()


def node_modules():
    """A directory holding playwright-core: the source tree's (a
    developer's own npm install), else one installed into the build
    directory with npm ci."""
    src = os.path.join(BROWSER_SRC, "node_modules")
    if os.path.isdir(os.path.join(src, "playwright-core")):
        return src
    dest = os.path.join(build_dir(), "tests", "browser")
    mods = os.path.join(dest, "node_modules")
    if os.path.isdir(os.path.join(mods, "playwright-core")):
        return mods
    os.makedirs(dest, exist_ok=True)
    if os.path.realpath(dest) != os.path.realpath(BROWSER_SRC):
        for f in ("package.json", "package-lock.json"):
            shutil.copy(os.path.join(BROWSER_SRC, f), os.path.join(dest, f))
    r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                       cwd=dest, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, "npm ci failed:\n" + r.stdout + r.stderr
    return mods


def test_browser_walk_both_locales():
    for tool in ("node", "npm"):
        assert shutil.which(tool), f"{tool} is not installed (scripts/deps.sh test)"
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing (scripts/deps.sh test)"
    mods = node_modules()
    artifacts = os.path.join(build_dir(), "tests", "artifacts", "browser")
    shutil.rmtree(artifacts, ignore_errors=True)
    os.makedirs(artifacts)
    s = Stack(workers=2)
    os.makedirs(s.data)
    with open(os.path.join(s.data, "config.yml"), "w") as f:
        f.write("development_token_logging: true\n")
    r = run_cli(["--data", s.data, "--admin-user", ADMIN_USER, "--admin-pass",
                 ADMIN_PASS, "--init-admin"])
    assert r.returncode == 0, r.stderr
    s.start()
    try:
        env = dict(os.environ)
        env.update({
            "BASE_URL": f"http://127.0.0.1:{s.port}",
            "STACK_LOG": os.path.join(s.tmp, "stack.log"),
            "ARTIFACT_DIR": artifacts,
            "CHROMIUM": CHROMIUM,
            "ADMIN_USER": ADMIN_USER,
            "ADMIN_PASS": ADMIN_PASS,
            "NODE_PATH": mods,
            "HOME": s.tmp,      # Chromium's crash and config files
        })
        r = subprocess.run(["node", os.path.join(BROWSER_SRC, "walk.js")],
                           env=env, capture_output=True, text=True, timeout=240)
        print(r.stdout, end="")
        assert r.returncode == 0, "browser walk failed:\n" + r.stdout + r.stderr \
            + "\n--- stack log ---\n" + s.stderr()
        shots = sorted(os.listdir(artifacts))
        assert len([x for x in shots if x.startswith("en-")]) >= 10, shots
        assert len([x for x in shots if x.startswith("ru-")]) >= 10, shots
        print(f"screenshots: {artifacts} ({len(shots)} files)")
        assert s.stop() == 0
        assert not s.leftovers()
        with open(os.path.join(s.tmp, "stack.log"), errors="replace") as f:
            log = f.read()
        for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                    "; replacing"):
            assert bad not in log, log
    finally:
        s.cleanup()


if __name__ == "__main__":
    run_tests(dict(globals()))

"""JS clients against the local host (tests/e2e/js), run with `node --test`: the official openai npm package and the Vercel AI SDK."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from tests.e2e.support import ADA, GRACE, JS_DIR, REQUIRED_ROLE, require_tools
from tests.support.stack import APPLICATION_NAME, Stack

JS_TESTS = ["openai-sdk.test.mjs", "spa-relay.test.mjs", "ai-sdk.test.mjs"]


def test_openai_npm_package_streamed_and_non_streamed(e2e_stack: Stack) -> None:
    require_tools()
    node = shutil.which("node")
    assert node is not None
    env = {
        **os.environ,
        "RELAY_BASE_URL": f"{e2e_stack.api}/v1",
        "RELAY_TOKEN": e2e_stack.token(oid=ADA.oid, tid=ADA.tid, name=ADA.name, roles=REQUIRED_ROLE),
        "RELAY_OTHER_TOKEN": e2e_stack.token(oid=GRACE.oid, tid=GRACE.tid, name=GRACE.name, roles=REQUIRED_ROLE),
        "RELAY_OID": ADA.oid,
        "RELAY_TID": ADA.tid,
        "RELAY_APPLICATION_NAME": APPLICATION_NAME,
        "EMULATOR_URL": e2e_stack.emulator_url,
        "NO_COLOR": "1",
    }
    proc = subprocess.run(
        [node, "--test", "--test-reporter=tap", *JS_TESTS], cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=90
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    passed = re.search(r"^# pass (\d+)$", output, re.MULTILINE)
    # Every test the files declare passed: none was left out, skipped or marked todo.
    declared = sum(len(re.findall(r"^\s*it\(", (JS_DIR / name).read_text(encoding="utf-8"), re.MULTILINE)) for name in JS_TESTS)
    assert passed and int(passed.group(1)) == declared and "\n# fail 0\n" in output, output

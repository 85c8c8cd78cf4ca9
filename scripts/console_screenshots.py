"""Screenshots of every console page, light and dark (and a few on a phone), into docs/console/ (and the
overview docs/console.png).

Runs the console's page tests with ``TUNEFORGE_CONSOLE_DOCS=1``: they start a server on a free loopback port
with a temporary data folder, fine-tune the shipped ``bert-tiny`` on ``examples/support_intents`` (so the
evaluation shows a model that learned), and save each page as they check it; the chat pages' tests
(tests/console/test_chat_console.py) add a chat file, a generation job on a tiny Llama and the playground talking
to the shipped ``smollm2``. Needs Chromium (``scripts/install_browser.sh``) and the dev extra (Playwright).

    python scripts/console_screenshots.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    docs = ROOT / "docs" / "console"
    docs.mkdir(parents=True, exist_ok=True)
    for old in docs.glob("*.png"):
        old.unlink()
    env = {**os.environ, "TUNEFORGE_CONSOLE_DOCS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/console/test_pages.py",
           "tests/console/test_chat_console.py", "-k", "accessibility_checks or phone"]
    rc = subprocess.call(cmd, cwd=ROOT, env=env)
    hero = docs / "job-light.png"
    if hero.is_file():  # the overview at the top of docs/console.md
        shutil.copyfile(hero, ROOT / "docs" / "console.png")
    shots = sorted(p.name for p in docs.glob("*.png"))
    print(f"{len(shots)} screenshots in {docs.relative_to(ROOT)}: {', '.join(shots)}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())

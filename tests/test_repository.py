"""The repository explains itself: every "DESIGN §N" it cites is a section of its own docs/design.md."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_design_reference_resolves_to_a_section_of_design_md():
    sections = set(re.findall(r"^## (\d+)\. ", (ROOT / "docs" / "design.md").read_text(), flags=re.M))
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not files:   # not a git checkout: every text file of the tree
        files = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.suffix in {".py", ".md", ".ipynb", ".cfg"}]
    cited = {}
    for name in files:
        if Path(name).suffix in {".py", ".md", ".ipynb", ".cfg", ".toml"} and name != "docs/design.md":
            for ref in re.findall(r"DESIGN\W{0,3}((?:§\d+\W{0,3})+)", (ROOT / name).read_text(encoding="utf-8")):
                for n in re.findall(r"§(\d+)", ref):
                    cited.setdefault(n, name)
    assert len(cited) >= 5, f"expected the code to cite DESIGN sections, found {cited}"
    missing = {n: where for n, where in cited.items() if n not in sections}
    assert not missing, f"docs/design.md has sections {sorted(sections)}, but these are cited: {missing}"


def test_ci_runs_the_test_command_the_readme_gives():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r'^(pip install -e "\.\[test\]" && .*pytest.*)$', readme, flags=re.M)
    assert commands, "the README gives no test command"
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert all(c in ci for c in commands), f"CI does not run the README's test command {commands} verbatim"

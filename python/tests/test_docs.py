"""The documentation stays true: the README's Python example runs (on a GPU; without one it is
only compiled), every Python block of the README and docs/ is valid syntax, and every relative
link of the Markdown pages resolves to a file or folder of the repository."""

import pathlib
import re

import pytest
import torch

from reference import assert_close_rel, cos_sin_from_inv_freq, rotate

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "python" / "README.md",
                *(ROOT / "docs").glob("*.md")])
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def python_blocks(page):
    return _BLOCK.findall(page.read_text())


def readme_example():
    blocks = python_blocks(ROOT / "README.md")
    assert blocks, "README.md has no ```python block"
    return blocks[0]


def test_every_page_exists():
    for page in PAGES:
        assert page.is_file(), f"{page.relative_to(ROOT)} is missing"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_compile(page):
    for i, block in enumerate(python_blocks(page)):
        compile(block, f"{page.name}[python block {i}]", "exec")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)  # links in code are code
    broken = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # absolute URLs and anchors within the page
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


@pytest.mark.gpu
def test_readme_example_matches_the_reference():
    torch.manual_seed(0)
    state = torch.cuda.get_rng_state()
    scope = {}
    exec(compile(readme_example(), "README.md", "exec"), scope)
    torch.cuda.set_rng_state(state)  # the same draws again: the example's inputs
    q_in = torch.randn(4, 32, 128, device="cuda", dtype=torch.bfloat16)
    k_in = torch.randn(4, 8, 128, device="cuda", dtype=torch.bfloat16)
    cos, sin = cos_sin_from_inv_freq(torch.arange(4, device="cuda"), scope["inv_freq"])
    assert_close_rel(scope["q"], rotate(q_in.double(), cos, sin), torch.bfloat16)
    assert_close_rel(scope["k"], rotate(k_in.double(), cos, sin), torch.bfloat16)

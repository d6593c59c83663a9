"""MkDocs hooks for nst's site (mkdocs.yml names this file; it is not a page).

The pages in docs/ link to the repository as they would on GitHub:
``../assets/demo.png``, ``../notebooks/studio.ipynb``, ``../BENCHMARKS.md``.
So that the same links work in the built site:

- `on_files` adds the pictures under assets/ to the site, at ``assets/``;
- `on_page_markdown` rewrites each link that leaves docs/: to the copied
  picture for assets/, else to the file on GitHub (the repository that
  ``nst.REPOSITORY`` names); and replaces a line
  ``<!-- nst:include FILE -->`` by that repository file's text (the home
  page is README.md), its links made to work from docs/ the same way;
  ``<!-- nst:include FILE demoted -->`` also moves its headings one level
  down, under the page's own title.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PICTURES = {".png", ".gif", ".jpg", ".jpeg", ".svg"}
LINK = re.compile(r"(\]\()([^)\s#]+)(#[^)\s]*)?(\))")
INCLUDE = re.compile(r"^<!-- nst:include (\S+)( demoted)? -->$", re.M)


def _repository() -> str:
    return re.search(r'^REPOSITORY = "(.*)"', (ROOT / "nst" / "__init__.py").read_text(), re.M).group(1)


def on_files(files: Files, config) -> Files:
    for path in sorted((ROOT / "assets").rglob("*")):
        if path.suffix.lower() in PICTURES:
            files.append(File(str(path.relative_to(ROOT)), str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


def _rewrite(markdown: str, base: Path) -> str:
    """Links relative to ``base`` that leave docs/, made to work in the site."""

    def link(match: re.Match) -> str:
        target = match.group(2)
        if re.match(r"^[a-z]+:", target) or target.startswith("/"):
            return match.group(0)
        resolved = (base / target).resolve()
        if not resolved.is_relative_to(ROOT):
            return match.group(0)
        relative = resolved.relative_to(ROOT).as_posix()
        if resolved.is_relative_to(DOCS):
            new = resolved.relative_to(DOCS).as_posix()  # a page (every page is at the top of docs/)
        elif relative.startswith("assets/"):
            new = relative  # added to the site by on_files, beside the pages
        else:
            kind = "tree" if resolved.is_dir() else "blob"
            new = f"https://github.com/{_repository()}/{kind}/main/{relative}"
        return f"{match.group(1)}{new}{match.group(3) or ''}{match.group(4)}"

    return LINK.sub(link, markdown)


def _include(match: re.Match) -> str:
    lines, fenced = [], False
    for line in (ROOT / match.group(1)).read_text().splitlines():
        fenced ^= line.startswith("```")
        demote = match.group(2) and not fenced and re.match(r"#+ ", line)
        lines.append("#" + line if demote else line)
    return _rewrite("\n".join(lines), ROOT)


def on_page_markdown(markdown: str, page, config, files) -> str:
    markdown = INCLUDE.sub(_include, markdown)
    return _rewrite(markdown, (DOCS / page.file.src_path).parent)

"""A folder of real public documents of four types: converted, chunked and timed, then trained on.

    python benchmarks/documents.py build .domains/debian-docs     # the folder, from Debian packages' documentation
    python benchmarks/documents.py measure .domains/debian-docs   # per-file conversion time and chunk statistics
    python benchmarks/documents.py run .domains/debian-docs       # dvc repro on it with synthetic queries

`build` needs four Debian packages installed (`apt-get install texlive-latex-base-doc python3.11-doc nodejs
pandoc`) and copies from them, fetching nothing: PDF — *LaTeX News* issues and the LaTeX team's
guides (texlive-latex-base-doc, LPPL 1.3c); HTML — the Python 3.11 library reference (python3.11-doc, PSF License
2.0); Markdown — the Node.js API reference (nodejs, MIT); DOCX — the Python 3.11 tutorial, HOWTOs, FAQ, setup guide and
"What's New" pages, written as
Word documents by pandoc from their HTML (so each type holds different texts). `SOURCES.json` beside
`documents/` lists every file's origin and licence.

`measure` converts every file the way the prepare stage does (`embedtune.documents`, no cache) and chunks it with
the base model's tokenizer at its `max_seq_length`; it writes per-type figures — files, skipped files with their
reasons, conversion seconds per file (median, p95, max) and per MB, sections, chunks per file and tokens per chunk —
to `reports/benchmarks/documents.json`. `run` clones HEAD into `.domains/documents` and runs the whole pipeline on
the folder with `synthetic.enabled` (figures labelled synthetic), collected into `reports/research/documents.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from html import escape as html_escape
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

DOC = Path("/usr/share/doc")
PYTHON_HTML = DOC / "python3.11" / "html"
SOURCES = {
    "pdf": ("texlive-latex-base-doc", "LPPL-1.3c"),
    "html": ("python3.11-doc", "PSF-2.0"),
    "md": ("nodejs", "MIT"),
    "docx": ("python3.11-doc, written as DOCX by pandoc", "PSF-2.0"),
}
PER_TYPE = 50


def _pick(paths: list[Path], count: int) -> list[Path]:
    """``count`` of ``paths`` spread evenly over their sorted order (the same files on every machine)."""
    paths = sorted(paths)
    if len(paths) <= count:
        return paths
    return [paths[i * len(paths) // count] for i in range(count)]


def _candidates() -> dict[str, list[Path]]:
    latex = DOC / "texlive-doc" / "latex" / "base"
    guides = [latex / f"{name}.pdf" for name in ("usrguide", "clsguide", "fntguide", "cfgguide", "cyrguide",
                                                  "encguide", "modguide", "lppl", "ltx3info", "webcomp",
                                                  "lamport-manual", "makeindx", "ltxdoc", "latexrelease")]
    return {
        "pdf": [p for p in guides if p.is_file()] + sorted(latex.glob("ltnews[0-9]*.pdf")),
        "html": sorted((PYTHON_HTML / "library").glob("*.html")),
        "md": sorted(p for p in (DOC / "nodejs" / "api").glob("*.md") if p.stat().st_size > 2000),
        "docx": [p for part in ("tutorial", "howto", "faq", "using", "whatsnew")
                 for p in sorted((PYTHON_HTML / part).glob("*.html"))],
    }


def _to_docx(sources: list[Path], target: Path) -> None:
    """Write each HTML page's main text (Sphinx's ``div[role=main]``, no navigation) as a Word document with
    pandoc: headings become Word heading styles, tables Word tables."""
    from bs4 import BeautifulSoup

    if shutil.which("pandoc") is None:
        sys.exit("build needs pandoc for the DOCX files: apt-get install pandoc")
    for source in sources:
        soup = BeautifulSoup(source.read_text(encoding="utf-8"), "html.parser")
        main = soup.find(attrs={"role": "main"}) or soup.body
        for mark in main.find_all("a", class_="headerlink"):  # Sphinx's pilcrows: not in a Word document
            mark.decompose()
        title = html_escape(soup.title.get_text() if soup.title else source.stem)
        html = f"<html><head><title>{title}</title></head><body>{main}</body></html>"
        subprocess.run(["pandoc", "--from", "html", "--to", "docx", "--output",
                        str(target / f"{source.parent.name}-{source.stem}.docx")],
                       input=html, text=True, check=True, capture_output=True, timeout=300)


def build(directory: Path) -> None:
    """Assemble ``directory/documents/{pdf,html,md,docx}`` and ``directory/SOURCES.json``."""
    candidates = _candidates()
    short = {kind: len(paths) for kind, paths in candidates.items() if len(paths) < 20}
    if short:
        sys.exit(f"too few source files {short}: apt-get install texlive-latex-base-doc python3.11-doc nodejs")
    folder = directory / "documents"
    if folder.exists():
        shutil.rmtree(folder)
    record = []
    for kind, paths in candidates.items():
        target = folder / kind
        target.mkdir(parents=True)
        chosen = _pick(paths, PER_TYPE)
        if kind == "docx":
            _to_docx(chosen, target)
        else:
            for path in chosen:
                shutil.copy2(path, target / path.name)
        package, licence = SOURCES[kind]
        record += [{"file": f"{kind}/{(p.parent.name + '-' + p.stem + '.docx') if kind == 'docx' else p.name}",
                    "from": str(p), "package": package, "licence": licence} for p in chosen]
    (directory / "SOURCES.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"{len(record)} files in {folder}")


def _spread(values: list[float], digits: int = 3) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {"median": round(statistics.median(ordered), digits),
            "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], digits),
            "max": round(ordered[-1], digits), "total": round(sum(ordered), digits)}


def measure(directory: Path) -> dict:
    """Convert and chunk every file under ``directory/documents`` as the prepare stage does, timing each."""
    import yaml
    from tqdm.auto import tqdm

    from embedtune.documents.convert import Unconvertible, convert_file, kind_of
    from embedtune.documents.folder import DocumentOptions, chunker_for_model, document_files

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    options = DocumentOptions.from_params(params["prepare"]["documents"])
    chunker = chunker_for_model(params["model"]["base"], params["model"]["max_seq_length"], options)
    folder = directory / "documents"
    files = [p for p in document_files(folder) if p.stat().st_size <= options.max_file_mb * 2**20]
    for kind in sorted({kind_of(p) for p in files} - {None}):  # imports and first-call set-up, not timed
        convert_file(next(p for p in files if kind_of(p) == kind))
    per_type: dict[str, dict[str, list]] = {}
    for path in tqdm(files, desc="Converting", unit="file"):
        kind = kind_of(path) or "unsupported"
        figures = per_type.setdefault(kind, {"seconds": [], "mb": [], "sections": [], "chunks": [], "tokens": [],
                                              "characters": [], "skipped": []})
        relative = path.relative_to(folder).as_posix()
        started = time.perf_counter()
        try:
            converted = convert_file(path)
        except Unconvertible as exc:
            figures["skipped"].append({"path": relative, "reason": exc.reason})
            continue
        seconds = time.perf_counter() - started
        chunks = chunker.chunk(relative, converted)
        figures["seconds"].append(seconds)
        figures["mb"].append(path.stat().st_size / 2**20)
        figures["sections"].append(len(converted.sections))
        figures["characters"].append(converted.characters)
        figures["chunks"].append(len(chunks))
        figures["tokens"] += [chunk.tokens for chunk in chunks]
    sources = directory / "SOURCES.json"
    origin = {}
    for row in json.loads(sources.read_text()) if sources.is_file() else []:
        origin.setdefault(row["file"].split("/")[0], {"package": row["package"], "licence": row["licence"]})
    report = {"folder": str(directory), "sources": origin, "model": params["model"]["base"],
              "budget_tokens": chunker.max_tokens, "cpu": _cpu(), "types": {}}
    for kind, f in sorted(per_type.items()):
        tokens = f["tokens"]
        report["types"][kind] = {
            "files": len(f["seconds"]) + len(f["skipped"]), "converted": len(f["seconds"]),
            "skipped": f["skipped"], "megabytes": round(sum(f["mb"]), 2),
            "seconds_per_file": _spread(f["seconds"]),
            "seconds_per_mb": round(sum(f["seconds"]) / sum(f["mb"]), 3) if f["mb"] else None,
            "characters_per_file": _spread(f["characters"], 0), "sections_per_file": _spread(f["sections"], 0),
            "chunks_per_file": _spread(f["chunks"], 0), "chunks": len(tokens),
            "tokens_per_chunk": {**_spread(tokens, 0), "mean": round(statistics.mean(tokens), 1) if tokens else None,
                                 "at_least_90pct_of_budget": round(sum(t >= 0.9 * chunker.max_tokens for t in tokens)
                                                                   / len(tokens), 3) if tokens else None},
        }
    out = REPO / "reports" / "benchmarks" / "documents.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    return report


def table(report: dict) -> str:
    """The per-type figures as a markdown table."""
    header = ("| type | files | skipped | MB | s/file median | p95 | max | s/MB | chunks | chunks/file median | "
              "tokens/chunk median | p95 |")
    lines = [header, "|---" * 12 + "|"]
    for kind, t in report["types"].items():
        s, c, k = t["seconds_per_file"], t["chunks_per_file"], t["tokens_per_chunk"]
        lines.append(f"| {kind} | {t['files']} | {len(t['skipped'])} | {t['megabytes']} | {s.get('median')} | "
                     f"{s.get('p95')} | {s.get('max')} | {t['seconds_per_mb']} | {t['chunks']} | {c.get('median')} | "
                     f"{k.get('median')} | {k.get('p95')} |")
    return "\n".join(lines)


def _cpu() -> str:
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        return "unknown"
    return next((line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
                 if line.startswith("model name")), "unknown")


def run(directory: Path) -> dict:
    """Clone HEAD into ``.domains/documents`` and run the whole pipeline on ``directory`` with synthetic queries."""
    from domains import collect

    root = REPO / ".domains" / "documents"  # a fresh clone of this commit each time
    if root.exists():
        shutil.rmtree(root)
    subprocess.run(["git", "clone", "-q", str(REPO), str(root)], check=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(root / "src"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    overrides = ["data.name=documents", f"data.source={directory.resolve()}", "synthetic.enabled=true"]
    subprocess.run([sys.executable, "-m", "embedtune.config", *overrides], cwd=root, env=env, check=True)
    started = time.perf_counter()
    subprocess.run(["dvc", "repro"], cwd=root, env=env, check=True)
    return collect("documents", root, round(time.perf_counter() - started))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("build", "measure", "run"))
    parser.add_argument("directory", type=Path)
    args = parser.parse_args()
    {"build": build, "measure": measure, "run": run}[args.command](args.directory)


if __name__ == "__main__":
    main()

"""`optimize report`: the search's analysis as `REPORT.md` with PNG figures, a self-contained `report.html`
and CSV tables.

Everything is read from the study's database (trials, their user attrs and the stored config), so
the report can be written from any machine that reaches the storage, during or after the search.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import optuna

from optimize.folders import make_output_folder, studies_dir
from optimize.storage import redact

from ._render import FIGURE_FOLDER, Section, Text, figures, markdown, page, write_tables
from ._sections import build_sections
from ._tables import study_data

__all__ = ["write_report"]


def write_report(study: optuna.Study, url: str | None = None, out_dir: str | Path | None = None) -> Path:
    """Write `REPORT.md`, its `figures/*.png`, `report.html` and `tables/*.csv` (default `studies/NAME/report/`);
    return the folder.

    `url` is the storage the study was read from, named (without password) in the report.
    """
    out = make_output_folder(Path(out_dir) if out_dir else studies_dir() / study.study_name / "report")
    data = study_data(study)
    sections = build_sections(study, data)
    title = f"Search report: study {study.study_name}"
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections[0].blocks.insert(
        0, Text(f"{len(data.trials)} trials read from `{redact(url) if url else 'memory'}` on {created}.")
    )
    write_tables(sections, out / "tables")
    write_figures(sections, out / FIGURE_FOLDER)
    (out / "REPORT.md").write_text(markdown(title, sections), encoding="utf-8")
    (out / "report.html").write_text(page(title, sections), encoding="utf-8")
    return out


def write_figures(sections: list[Section], folder: Path) -> list[Path]:
    """Every figure as `<name>.png` in `folder`, which holds only the report's figures.

    Drawn with matplotlib (no browser: GPU nodes have none), imported here so that commands that never
    write a report do not pay for it.
    """
    from ._png import write_png

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    paths = []
    for figure in figures(sections):
        path = folder / f"{figure.name}.png"
        write_png(figure.figure, path)
        paths.append(path)
    return paths

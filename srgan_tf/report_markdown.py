"""The results report (srgan_tf.report's results.json) as a Markdown page: tables, links, prose."""

from __future__ import annotations

import json
import os
from pathlib import Path

METHODS = {"bicubic": "bicubic", "srresnet": "SRResNet", "srgan": "SRGAN"}
GENERATORS = ("srresnet", "srgan")
# Scalars summarised in the Markdown's training table (first and last logged value).
KEY_SCALARS = ("srresnet/content_loss", "srresnet/val_psnr", "srgan/content_loss", "srgan/adv_loss",
               "srgan/d_loss", "srgan/d_real", "srgan/d_fake", "srgan/val_psnr")


def num(x: float | None, digits: int, sign: bool = False, none: str = "inf") -> str:
    """x with `digits` decimals; None is `none` ("inf": the PSNR of identical images)."""
    return none if x is None else f"{x:{'+' if sign else ''}.{digits}f}"


def _niqe(x: float | None) -> str:
    return num(x, 2, none="–")


def _training_data(config: dict) -> str:
    from srgan_tf import data  # imports TensorFlow: only when a report is written

    d = config.get("data", {})
    return {"sample": f"the {len(data.SAMPLE_TRAIN)} photographs shipped with scikit-image (none from the "
                      "benchmark sets)",
            "folder": f"the images in `{d.get('path')}`", "paired": f"the image pairs in `{d.get('path')}`",
            "tfds": f"the TFDS dataset `{d.get('tfds_name')}`"}.get(d.get("source"), f"`{d.get('source')}` data")


def _comparison_text(report: dict) -> list[str]:
    config = report["reproducibility"]["config"]
    steps = {m: config.get(m, {}).get("steps", 0) for m in GENERATORS}
    train = config.get("train", {})
    lines = [
        f"**These are not the paper's experiment.** The paper's networks were trained on 350 thousand ImageNet "
        f"images for 10^6 SRResNet steps and 2x10^5 SRGAN steps (SRGAN with the VGG54 content loss) on a GPU. "
        f"The networks here were trained on {_training_data(config)} for "
        f"{steps['srresnet']:,} SRResNet and {steps['srgan']:,} SRGAN steps, batches of {train.get('batch_size')} "
        f"{config['data'].get('crop')}x{config['data'].get('crop')} crops, SRGAN content loss "
        f"`{config.get('srgan', {}).get('content_loss')}`, on a CPU: read the paper's columns as a reference "
        "point, not as what this code reached.",
        "",
    ]
    for set_name, b in report["benchmark"].items():
        m, g = b["methods"], b["gain_over_bicubic_db"]
        text = (f"- {set_name}: SRResNet is {num(g['srresnet'], 2, sign=True)} dB and SRGAN "
                f"{num(g['srgan'], 2, sign=True)} dB over bicubic")
        if b["paper"]:
            p = b["paper"]["bicubic"]
            text += (f"; the paper's SRResNet {_paper_gain(b, 'srresnet')} dB and SRGAN {_paper_gain(b, 'srgan')} dB. "
                     f"Bicubic here {num(m['bicubic']['psnr'], 2)} dB / {m['bicubic']['ssim']:.4f} against the "
                     f"paper's {p['psnr']:.2f} dB / {p['ssim']:.4f}, the measure of how far the two evaluation "
                     "protocols agree (the paper's SSIM implementation differs: compare SSIM with care)")
        lines.append(text + ".")
    return lines


def _paper_gain(b: dict, method: str) -> str:
    return f"{b['paper'][method]['psnr'] - b['paper']['bicubic']['psnr']:+.2f}"


def format_markdown(report: dict, out_dir: str | os.PathLike, md_dir: str | os.PathLike) -> str:
    """The report dict (results.json) as a Markdown page placed in `md_dir`, linking the pictures under
    `out_dir` by paths relative to `md_dir`. Every figure comes from `report`."""
    def link(rel: str) -> str:
        return Path(os.path.relpath(Path(out_dir) / rel, md_dir)).as_posix()

    repro = report["reproducibility"]
    lines = [f"# SRResNet and SRGAN: results of the run in `{report['workdir']}`", "",
             f"Written by `python -m srgan_tf.report` on {report['created']}. {report['scale']}x upscaling; "
             f"PSNR and SSIM on the Y channel with a {report['scale']}-pixel border removed, as in the literature, "
             "and NIQE (Mittal et al., 2013, as MATLAB computes it; lower is more natural) after the same border "
             "removal (srgan_tf.evaluate). NIQE is no-reference: it rewards natural statistics, and noise can "
             "fool it, so read it with the pictures.", "",
             "## Benchmarks", "",
             "| set | method | PSNR (dB) | SSIM | NIQE | over bicubic (dB) | paper PSNR (dB) | paper SSIM |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for set_name, b in report["benchmark"].items():
        for m, label in METHODS.items():
            r, paper = b["methods"][m], (b["paper"] or {}).get(m)
            gain = num(b["gain_over_bicubic_db"][m], 2, sign=True) if m in GENERATORS else ""
            paper_cells = f"{paper['psnr']:.2f} | {paper['ssim']:.4f}" if paper else "– | –"
            lines.append(f"| {set_name} | {label}{' (this run)' if m in GENERATORS else ''} | {num(r['psnr'], 2)} "
                         f"| {r['ssim']:.4f} | {_niqe(r.get('niqe'))} | {gain} | {paper_cells} |")
        hr_niqe = b["methods"]["bicubic"].get("hr_niqe")
        if hr_niqe is not None:
            lines.append(f"| {set_name} | HR (ground truth) | – | – | {_niqe(hr_niqe)} | | – | – |")
    lines += ["", *_comparison_text(report), ""]

    scalars = report["training"]["scalars"]
    lines += ["## Training curves", "", f"![training curves]({link(report['training']['plot'])})", "",
              "| scalar | first logged (step) | last logged (step) |", "|---|---:|---:|"]
    for tag in (t for t in KEY_SCALARS if scalars.get(t)):
        (s0, v0), (s1, v1) = scalars[tag][0], scalars[tag][-1]
        lines.append(f"| `{tag}` | {v0:.4g} ({s0}) | {v1:.4g} ({s1}) |")

    sweep = report["interpolation"]["sets"]
    lines += ["", "## Network interpolation (perception-distortion trade-off)", "",
              "Every weight of the generator set to (1 - alpha) SRResNet + alpha SRGAN (alpha 0 is SRResNet, 1 is "
              "SRGAN), each blend scored like the models above, and placed on the perception-distortion plane "
              "(Blau and Michaeli, 2018), the plot the field uses since PIRM 2018.", "",
              f"![the perception-distortion plane]({link(report['interpolation']['plot'])})", "",
              "| alpha | " + " | ".join(f"{s} PSNR (dB) | {s} SSIM | {s} NIQE" for s in sweep) + " |",
              "|---:|" + "---:|---:|---:|" * len(sweep)]
    for i, alpha in enumerate(report["interpolation"]["alphas"]):
        lines.append(f"| {alpha:g} | " + " | ".join(
            f"{num(rows[i]['psnr'], 2)} | {rows[i]['ssim']:.4f} | {_niqe(rows[i].get('niqe'))}"
            for rows in sweep.values()) + " |")

    lines += ["", "## Comparison images", "",
              "Per image: LR (nearest neighbour) | bicubic | SRResNet | SRGAN | HR, the most detailed square "
              "(red box) enlarged below; labels give each method's Y-PSNR on that image.", ""]
    for set_name, b in report["benchmark"].items():
        for row in b["images"]:
            scores = ", ".join(f"{label} {num(row[m]['psnr'], 2)} dB / {row[m]['ssim']:.4f} / NIQE "
                               f"{_niqe(row[m].get('niqe'))}" for m, label in METHODS.items())
            scores += f", HR NIQE {_niqe(row.get('hr', {}).get('niqe'))}"
            title = f"{set_name} {row['name']}"
            lines += [f"**{title}** ({scores})", "", f"![{title}]({link(row['grid'])})", ""]

    wall = repro["wall_time"]
    if wall["seconds"] is None:
        wall_text = "not recorded"
    else:
        phases = ", ".join(f"{p} {s:.0f} s" for p, s in wall.get("per_phase", {}).items())
        wall_text = f"{wall['seconds']:.0f} s ({wall['seconds'] / 60:.1f} min{'; ' + phases if phases else ''}), " \
                    f"from {wall['source']}"
    sw = repro["software"]
    lines += ["## Reproducibility", "",
              f"- Command: `{repro['command']}`" if repro["command"] else "- Command: not recorded",
              f"- Seed: {repro['seed']}", f"- Wall time: {wall_text}",
              f"- Software (where this report was written): Python {sw['python']}, TensorFlow {sw['tensorflow']}, "
              f"Keras {sw['keras']}, NumPy {sw['numpy']}; {sw['platform']}; {sw['cpu']}, {sw['cpu_count']} CPUs",
              "", "<details><summary>Configuration (config.json)</summary>", "", "```json",
              json.dumps(repro["config"], indent=2), "```", "", "</details>", ""]
    return "\n".join(lines)

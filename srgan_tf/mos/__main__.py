"""The MOS kit's command line: `python -m srgan_tf.mos prepare|serve|report --flags`.

    python -m srgan_tf.mos prepare --hr=../shared/data/Set14/HR --method nearest --method bicubic \\
        --method srgan=runs/srgan/generator.keras --method hr --out=studies/set14
    python -m srgan_tf.mos serve --study=studies/set14 --port=8000
    python -m srgan_tf.mos report --study=studies/set14

Exit status (srgan_tf.cli's): 0 done, 1 unusable input (one-line `error: ...` on stderr), 2 bad command line,
130 interrupted.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import socket
import sys
from collections.abc import Callable

from absl import flags

from srgan_tf import cli
from srgan_tf.mos.study import StudyError

USAGE = """usage: python -m srgan_tf.mos COMMAND [--flags]

commands:
  prepare --hr=DIR --method NAME=MODEL ... --out=STUDY_DIR   build a study (images, calibration, database)
  serve   --study=STUDY_DIR [--port=8000] [--host=127.0.0.1]   the raters' web page
  report  --study=STUDY_DIR [--out=DIR]                        MOS, Wilcoxon tests, plot (JSON and Markdown)

`python -m srgan_tf.mos COMMAND --help` lists a command's flags."""


class UserError(Exception):
    """A mistake in the input; main prints its one-line message and exits with status 1."""


def _prepare_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    flags.DEFINE_string("hr", None, "Folder of HR images (searched recursively), e.g. ../shared/data/Set5/HR.",
                        flag_values=fv)
    flags.DEFINE_multi_string("method", None, "NAME=MODEL, once per method. MODEL is nearest, bicubic, hr (the HR "
                              "image itself) or a .keras / SavedModel / .tflite generator; a built-in may stand "
                              "alone (--method bicubic).", flag_values=fv)
    flags.DEFINE_string("out", None, "Study folder to create (must not exist, or be empty; missing parent folders "
                        "are made).", flag_values=fv)
    flags.DEFINE_integer("scale", 4, "Upscaling factor.", lower_bound=1, flag_values=fv)
    flags.DEFINE_string("calibration_hr", None, "Folder of images for the calibration examples (default: --hr). "
                        "The paper calibrated on images outside the test set.", flag_values=fv)
    flags.DEFINE_integer("calibration_images", 3, "How many images give calibration examples (each shown as a "
                         "nearest-neighbour 1 and an HR 5).", lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("repeats", None, "Test items shown twice, for the test-retest check (default: 10%, at "
                         "least 1).", lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("seed", None, "Seed for choosing calibration images and repeats (ids stay random).",
                         flag_values=fv)
    flags.DEFINE_string("title", "Image quality study", "Title shown to raters.", flag_values=fv)
    for name in ("hr", "method", "out"):
        flags.mark_flag_as_required(name, flag_values=fv)
    return fv


def _serve_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    flags.DEFINE_string("study", None, "Study folder made by `prepare`.", flag_values=fv)
    flags.DEFINE_integer("port", 8000, "TCP port.", lower_bound=1, upper_bound=65535, flag_values=fv)
    flags.DEFINE_string("host", "127.0.0.1", "Address to listen on; the default reaches this machine only.",
                        flag_values=fv)
    flags.mark_flag_as_required("study", flag_values=fv)
    return fv


def _report_flags() -> flags.FlagValues:
    from srgan_tf.mos.report import PAIRINGS

    fv = flags.FlagValues()
    flags.DEFINE_string("study", None, "Study folder made by `prepare`.", flag_values=fv)
    flags.DEFINE_string("out", None, "Report folder (default: STUDY_DIR/report).", flag_values=fv)
    flags.DEFINE_enum("pairing", "rater_image", list(PAIRINGS), "Wilcoxon pairs: one per rater and image, or one "
                      "per rater (mean scores).", flag_values=fv)
    flags.DEFINE_boolean("complete_only", False, "Use only raters who scored every item.", flag_values=fv)
    flags.mark_flag_as_required("study", flag_values=fv)
    return fv


def _require(command: str, modules: tuple[str, ...]) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"`{command}` needs {', '.join(missing)}: pip install 'srgan-tf[mos]'")


def _run_prepare(fv: flags.FlagValues) -> None:
    from srgan_tf.images import ImageError
    from srgan_tf.loader import ModelLoadError
    from srgan_tf.mos.prepare import parse_method, prepare_study

    try:
        methods = [parse_method(m) for m in fv.method]
        manifest = prepare_study(fv.hr, methods, fv.out, scale=fv.scale, calibration_hr=fv.calibration_hr,
                                 calibration_images=fv.calibration_images, repeats=fv.repeats, seed=fv.seed,
                                 title=fv.title, log=print)
    except (ModelLoadError, ImageError) as e:
        raise UserError(str(e)) from None
    counts = manifest["counts"]
    print(f"wrote {fv.out}: {len(manifest['images'])} images x {len(manifest['methods'])} methods = "
          f"{counts['test']} items, {counts['repeat']} repeats, {counts['calibration']} calibration examples")
    print(f"next: python -m srgan_tf.mos serve --study={fv.out}")


def _check_listen(host: str, port: int) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            s.bind(infos[0][4])
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _run_serve(fv: flags.FlagValues) -> None:
    from srgan_tf.mos.study import Study

    study = Study.open(fv.study)
    _require("serve", ("fastapi", "uvicorn"))
    import uvicorn

    from srgan_tf.mos.app import create_app

    loopback = _is_loopback(fv.host)
    # Starlette's host check cannot parse bracketed IPv6 Host headers, so it guards IPv4 and names only.
    guarded = loopback and ":" not in fv.host
    app = create_app(study, allowed_hosts=["127.0.0.1", "localhost", fv.host] if guarded else None)
    _check_listen(fv.host, fv.port)
    if not loopback:
        print(f"note: listening on {fv.host}: anyone who reaches it can take part, and there is no TLS; "
              "put it behind an HTTPS proxy", file=sys.stderr)
    url_host = f"[{fv.host}]" if ":" in fv.host else fv.host
    print(f"serving {study.title!r} ({len(study.rating_items())} items, {len(study.store.raters())} raters so far) "
          f"at http://{url_host}:{fv.port}/  (Ctrl-C stops; every score is already saved)", flush=True)
    uvicorn.run(app, host=fv.host, port=fv.port, log_level="warning", access_log=False, server_header=False)


def _run_report(fv: flags.FlagValues) -> None:
    from srgan_tf.mos.study import Study

    study = Study.open(fv.study)
    _require("report", ("scipy", "matplotlib"))
    from srgan_tf.mos.report import REPORT_FILES, format_markdown, write_report

    out = fv.out or os.path.join(fv.study, "report")
    report = write_report(study, out, pairing=fv.pairing, complete_only=fv.complete_only)
    print(format_markdown(report), end="")
    print(f"\nwrote {os.path.join(out, REPORT_FILES['json'])}, {REPORT_FILES['markdown']} and {REPORT_FILES['plot']}")


COMMANDS: dict[str, tuple[Callable[[], flags.FlagValues], Callable[[flags.FlagValues], None]]] = {
    "prepare": (_prepare_flags, _run_prepare),
    "serve": (_serve_flags, _run_serve),
    "report": (_report_flags, _run_report),
}


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns the exit status (0 ok, 1 bad input, 2 bad command line, 130 interrupted)."""
    cli.lower_native_log_level()
    argv = sys.argv if argv is None else argv
    if len(argv) < 2 or argv[1] in ("-h", "--help", "-help", "help"):
        print(USAGE)
        return cli.EXIT_OK if len(argv) >= 2 else cli.EXIT_BAD_FLAGS
    command = argv[1]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return cli.EXIT_BAD_FLAGS
    make_flags, run = COMMANDS[command]
    fv = make_flags()
    status = cli.parse_flags(fv, [f"srgan_tf.mos {command}", *argv[2:]], f"python -m srgan_tf.mos {command} [--flags]")
    if status is not None:
        return status
    try:
        run(fv)
    except (UserError, StudyError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return cli.EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return cli.EXIT_INTERRUPTED
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

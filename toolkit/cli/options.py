"""The options of `edgekd`'s commands, each declared once (type, flag, help, checks), so a command's
signature is one line per option."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

# Shared
ConfigArg = Annotated[
    Path | None,
    typer.Argument(help="YAML config; the built-in default when omitted.", exists=True, dir_okay=False),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")]
RunArg = Annotated[
    Path, typer.Argument(help="Run directory written by an earlier stage.", exists=True, file_okay=False)
]
ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Continue models whose training was cut off, from their last epoch.")
]

# edgekd export
RunDirArg = Annotated[
    Path | None,
    typer.Argument(help="Run directory written by an earlier stage.", exists=True, file_okay=False),
]
FromOpt = Annotated[
    Path | None,
    typer.Option("--from", help="Bundle this ONNX file instead of a run's checkpoints.", exists=True),
]
ExportOutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="With --from: folder to write.")]
CalibrationOpt = Annotated[
    Path | None,
    typer.Option(help="With --from: a .npy (N, C, H, W) float32 array or an .npz with x.", exists=True),
]
TestOpt = Annotated[
    Path | None, typer.Option(help="With --from: an .npz with x (model input) and y (labels).", exists=True)
]
Int8Opt = Annotated[
    Literal["static", "dynamic"] | None,
    typer.Option("--int8", help="With --from: static (needs --calibration) or dynamic int8."),
]
Fp16Opt = Annotated[bool, typer.Option("--fp16", help="With --from: a float16 file too.")]
BudgetOpt = Annotated[
    float | None,
    typer.Option(
        min=0.0, metavar="POINTS", help="With --from --int8 static: keep layers float until within X points."
    ),
]
TfliteOpt = Annotated[
    bool, typer.Option("--tflite", help="With --from: TFLite files too, via onnx2tf (extra 'onnx2tf').")
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        metavar="SPEC",
        help="Bundle your own torch model: package.module:factory (with --weights), .pt2 or TorchScript.",
    ),
]
WeightsOpt = Annotated[
    Path | None, typer.Option(help="With --model FACTORY: its state_dict file.", exists=True)
]
DataOpt = Annotated[
    Path | None,
    typer.Option(help="With --model: a config whose data and export sections to use.", exists=True),
]
ExportResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Keep files an earlier, cut-off export wrote and checked.")
]

# edgekd bench
BenchPathArg = Annotated[
    Path,
    typer.Argument(
        help="Run directory, bundle folder or .tar.gz, a model file (.onnx, .tflite, .pte, .pt2, ...) or a "
        "folder of them.",
        exists=True,
    ),
]
ThreadsOpt = Annotated[list[int] | None, typer.Option("--threads", min=1, help="Repeat for several.")]
ResultsOpt = Annotated[
    Path | None,
    typer.Option(help="JSONL to append to (default: RUN/bench/results.jsonl); results.csv beside it."),
]
MinRunsOpt = Annotated[int | None, typer.Option(min=1)]
MinTimeOpt = Annotated[float | None, typer.Option(min=0.0, help="Seconds of timed runs, at least.")]
SuiteOpt = Annotated[
    str | None, typer.Option(help="cpu, raspberry-pi, jetson, mobile-class, or a suite YAML file.")
]
BatchOpt = Annotated[list[int] | None, typer.Option("--batch", min=1, help="Batch size; repeat.")]
StreamsOpt = Annotated[list[int] | None, typer.Option("--streams", min=1, help="Concurrent streams; repeat.")]
ShapeOpt = Annotated[
    str | None, typer.Option(help="Input shape for dynamic dims, e.g. 1,1,28,28 (default: 1).")
]
RepeatsOpt = Annotated[int | None, typer.Option(min=1, help="Rounds, each in a new shuffled order.")]
CooldownOpt = Annotated[float | None, typer.Option(min=0.0, help="Seconds to sleep between configurations.")]
SeedOpt = Annotated[int | None, typer.Option(min=0, help="Seed of the shuffled order.")]
PinOpt = Annotated[
    bool | None, typer.Option("--pin/--no-pin", help="Pin each worker to cores of its own (default: pin).")
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(help="Seconds one worker may run before it is killed and counted failed (default 600)."),
]
BenchResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Measure only the rounds that --results does not hold yet.")
]
StreamOpt = Annotated[
    bool, typer.Option("--stream", help="Also write each record to stdout as one JSON line.", hidden=True)
]
TargetOpt = Annotated[
    str | None, typer.Option(help="Run on a board over SSH: ssh://user@host[:port][/dir].", metavar="URL")
]
TargetsOpt = Annotated[
    Path | None, typer.Option(help="Run on every board of a targets YAML or Ansible inventory.", exists=True)
]
TrustOpt = Annotated[
    bool, typer.Option("--trust-new-host", help="Accept and remember a board's new host key.")
]
KnownHostsOpt = Annotated[
    Path | None, typer.Option(help="known_hosts file for the boards (default ~/.ssh/known_hosts).")
]

# edgekd predict
BundleArg = Annotated[Path, typer.Argument(help="Bundle folder (or its manifest.json).", exists=True)]
ImagesArg = Annotated[
    list[Path] | None,
    typer.Argument(help="Image files (PNG, JPEG, ...).", exists=True, dir_okay=False, metavar="IMAGE"),
]
TextsOpt = Annotated[
    list[str] | None,
    typer.Option("--text", help="A text to classify with a text bundle (repeat for several)."),
]
FileOpt = Annotated[
    str | None,
    typer.Option(
        "--file", help="File to run, as the manifest names it (default: the KD student's fp32 ONNX)."
    ),
]
TopKOpt = Annotated[int, typer.Option("--top-k", min=1, help="Labels to show per image.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document on stdout, for scripts.")]

# edgekd profile
ProfileFileOpt = Annotated[
    str | None, typer.Option("--file", help="One file of the bundle, by its manifest name (default: all).")
]
ProfileThreadsOpt = Annotated[int, typer.Option("--threads", min=1, help="Threads (and cores pinned).")]
ProfileRunsOpt = Annotated[int, typer.Option("--runs", min=10, help="Profiled runs per file, after warm-up.")]
ProfileOutOpt = Annotated[
    Path | None, typer.Option("--out", "-o", help="Folder to write (default: RUN/profile beside the bundle).")
]

# edgekd report
MoreRunsArg = Annotated[
    list[Path] | None,
    typer.Argument(
        help="More run directories: compare all side by side.",
        exists=True,
        file_okay=False,
        metavar="MORE_RUNS",
    ),
]
ReportOutOpt = Annotated[
    Path | None, typer.Option("--out", "-o", help="Folder to write (default: RUN/report).")
]
DropOpt = Annotated[
    float, typer.Option(min=0.0, help="Accuracy points a recommended student may lose vs the teacher.")
]
CompareOpt = Annotated[
    bool, typer.Option("--compare", help="Side by side across runs (implied by several runs).")
]
RegressionOpt = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        metavar="PCT",
        help="With --compare: exit 1 when a file's p50 got significantly slower than in the first run "
        "by more than PCT percent (a CI gate).",
    ),
]

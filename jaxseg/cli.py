"""The ``jaxseg`` command.

Subcommands (``jaxseg COMMAND --help`` for each): ``demo``, ``configs``, ``train``,
``evaluate``, ``predict``, ``bench`` and ``data check``. Heavy imports happen inside the handlers
so that ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from jaxseg import __version__


def _demo(args: argparse.Namespace) -> int:
    from jaxseg.demo import run_demo

    run_demo(Path(args.workdir), size=args.size, seed=args.seed, train_steps=args.train_steps)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from jaxseg.bench import run_suites

    return run_suites(args.suite, quick=args.quick, out=args.out)


def _configs(args: argparse.Namespace) -> int:
    del args
    from jaxseg.train.config import shipped_configs

    for name, summary in shipped_configs().items():
        print(f"{name:<16} {summary}")
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from jaxseg.data.check import main as check_main

    return check_main(args.directory, args.json_path, num_classes=args.num_classes)


def _fail(command: str, err: BaseException) -> int:
    print(f"jaxseg {command}: {err}", file=sys.stderr)
    return 2


class _OneLineLibraryErrors(logging.Filter):
    """Keep the message of a checkpointing library's error record, drop its traceback.

    When a checkpoint cannot be written (a full disk, a quota), Orbax's worker threads log every
    failed write with its traceback (hundreds of lines) before jaxseg reports the failure in one
    line naming the checkpoint; the messages say enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and "orbax" in record.pathname:
            record.exc_info = record.exc_text = None
        return True


def _quiet_library_tracebacks() -> None:
    logging.getLogger("absl").addFilter(_OneLineLibraryErrors())
    # asyncio's "exception was never retrieved" repeats what Orbax reports.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    sys.excepthook = functools.partial(_drop_closed_loop_errors, sys.excepthook)
    # ... and the writes they never started are reported when the interpreter exits.
    warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)


def _drop_closed_loop_errors(previous, kind, value, traceback) -> None:
    """``sys.excepthook`` without "Event loop is closed": after a failed checkpoint write the
    storage library's remaining writes finish on threads whose callbacks find Orbax's event
    loop closed, and each prints this traceback (one per array) after the CLI's own line."""
    if kind is RuntimeError and str(value) == "Event loop is closed":
        return
    previous(kind, value, traceback)


def _progress(args: argparse.Namespace) -> bool | None:
    return False if args.no_progress else None


def _train(args: argparse.Namespace) -> int:
    import jax
    from jax.experimental import multihost_utils

    from jaxseg.errors import DataError
    from jaxseg.methods import get_method
    from jaxseg.train import CheckpointError
    from jaxseg.train.config import load_config
    from jaxseg.train.experiment import run_experiment, run_seeds

    _quiet_library_tracebacks()
    try:
        _init_distributed(args)
        config = load_config(args.config, args.set)
        method = get_method(config.method)
        primary = _announce(config)
        if args.seeds:
            seeds = [int(s) for s in args.seeds.split(",")]
            result = run_seeds(method, config, args.workdir, seeds, progress=_progress(args))
        else:
            result = run_experiment(method, config, args.workdir, progress=_progress(args))
    except (FileNotFoundError, ValueError, DataError, CheckpointError) as err:
        return _fail("train", err)
    if primary:
        print(_report(result))
    if jax.process_count() > 1:
        # The others wait here while process 0 evaluates: jax.distributed's shutdown barrier
        # has a timeout, this collective has none.
        multihost_utils.sync_global_devices("jaxseg train: evaluated")
    return 0


def _init_distributed(args: argparse.Namespace) -> None:
    """``jax.distributed.initialize`` from ``--coordinator/--num-processes/--process-id``, or
    from the environment with ``--distributed`` (SLURM, TPU pods, ...); nothing otherwise."""
    import jax

    given = {
        "--coordinator": args.coordinator,
        "--num-processes": args.num_processes,
        "--process-id": args.process_id,
    }
    missing = [name for name, value in given.items() if value is None]
    if len(missing) == len(given) and not args.distributed:
        return
    if missing and len(missing) < len(given):
        raise ValueError(f"{', '.join(missing)} missing: give all of {', '.join(given)}")
    try:
        if missing:
            jax.distributed.initialize()
        else:
            jax.distributed.initialize(
                coordinator_address=args.coordinator,
                num_processes=args.num_processes,
                process_id=args.process_id,
            )
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"jax.distributed could not start: {err}") from err


def _announce(config) -> bool:
    """Print what is trained where (process 0 only); True on process 0."""
    import jax

    if jax.process_index() != 0:
        return False
    devices = jax.devices()
    processes = f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""
    print(
        f"jaxseg train: {config.method}, {config.train.steps} steps on {len(devices)} "
        f"{devices[0].platform} device(s){processes}"
    )
    return True


def _summary(mean: dict, std: dict) -> str:
    mean, std = mean or {}, std or {}
    parts = []
    for name in ("dice", "jaccard", "hd95", "asd"):
        if mean.get(name) is not None:
            parts.append(f"{name} {mean[name]:.4f} +- {std.get(name) or 0.0:.4f}")
    return ", ".join(parts)


def _report(result: dict) -> str:
    """The test summary: one line, or one per test set (and output, for methods with several)."""
    if not result:
        return "test: no test cases, nothing evaluated"
    if "mean" in result:
        return "test: " + _summary(result["mean"], result["std"])
    lines = []
    for test_set, outputs in result.items():
        if not isinstance(outputs, dict) or test_set in ("checkpoint", "protocol"):
            continue
        if "mean" in outputs:
            lines.append(f"test {test_set}: " + _summary(outputs["mean"], outputs["std"]))
            continue
        for output, entry in outputs.items():
            if isinstance(entry, dict) and "mean" in entry:
                lines.append(f"test {test_set} {output}: " + _summary(entry["mean"], entry["std"]))
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace) -> int:
    from jaxseg.errors import DataError
    from jaxseg.methods import get_method
    from jaxseg.train import CheckpointError
    from jaxseg.train.config import apply_overrides, load_config
    from jaxseg.train.experiment import evaluate_run, load_run_config

    if args.pred is not None or args.ref is not None:
        return _score(args)
    try:
        if args.workdir is None:
            raise ValueError("give --workdir (a trained run), or --pred and --ref (two folders)")
        if args.weights is not None:
            if args.config is None:
                raise ValueError("--weights needs --config CONFIG[:setting] (the test cases)")
            config = load_config(args.config, args.set)
            method = get_method(config.method)
            nets = _nets_from_torch(method, config, args.weights)
            Path(args.workdir).mkdir(parents=True, exist_ok=True)
        else:
            config = apply_overrides(load_run_config(args.workdir), args.set)
            method, nets = get_method(config.method), None
            if args.checkpoint:
                config.eval.checkpoint = args.checkpoint
        result = evaluate_run(
            method,
            config,
            args.workdir,
            nets=nets,
            source=args.weights,
            out_dir=args.output,
            progress=_progress(args),
        )
    except (FileNotFoundError, ImportError, ValueError, DataError, CheckpointError) as err:
        return _fail("evaluate", err)
    print(_report(result))
    print(f"written: {Path(args.output or Path(args.workdir) / 'eval') / 'metrics.json'}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from jaxseg.errors import DataError
    from jaxseg.scoring import score_folders

    try:
        if args.pred is None or args.ref is None or args.workdir is not None:
            raise ValueError("scoring folders takes --pred DIR and --ref DIR (and no --workdir)")
        summary = score_folders(
            args.pred,
            args.ref,
            labels=args.labels,
            spacing_from=args.spacing_from,
            out_dir=args.output,
        )
    except (ValueError, DataError) as err:
        return _fail("evaluate", err)
    print(_report(summary))
    out = Path(args.output or args.pred)
    print(f"written: {out / 'summary.json'}, {out / 'metrics.csv'}")
    for key, what in (("missing", "without a prediction"), ("extra", "without a reference")):
        if summary[key]:
            print(f"{len(summary[key])} case(s) {what}: {', '.join(summary[key])}")
    return 1 if summary["missing"] else 0


def _predict(args: argparse.Namespace) -> int:
    from jaxseg.errors import DataError
    from jaxseg.train import CheckpointError

    try:
        return _run_predict(args)
    except (FileNotFoundError, ImportError, ValueError, DataError, CheckpointError) as err:
        return _fail("predict", err)


def _run_predict(args: argparse.Namespace) -> int:
    from jaxseg.methods import Method, get_method
    from jaxseg.predict import plan, predict_paths
    from jaxseg.train.config import apply_overrides, load_config
    from jaxseg.train.experiment import load_run_config, restore_state
    from jaxseg.train.state import local_copy

    if (args.workdir is None) == (args.weights is None):
        raise ValueError("give either --workdir (a trained run) or --weights with --config")
    if args.workdir is not None:
        config = apply_overrides(load_run_config(args.workdir), args.set)
    else:
        if args.config is None:
            raise ValueError("--weights needs --config CONFIG[:setting] to build the network")
        config = load_config(args.config, args.set)
    if args.blend is not None:
        config.eval.blend = args.blend
    if args.batch_size is not None:
        config.eval.batch_size = args.batch_size
    method = get_method(config.method)
    if method.prepare_case is not Method.prepare_case and method.predict_source is None:
        raise ValueError(
            f"jaxseg predict does not run {config.method} yet: its cases need the method's own "
            "preparation (use jaxseg evaluate on labelled cases)"
        )
    if method.predict_source is not None:
        if args.workdir is None:
            raise ValueError(f"{config.method} predicts from a trained run: give --workdir")
        if args.tta:
            raise ValueError(f"--tta is not available for {config.method} (a fixed grid)")
    if args.device is not None:
        import jax

        jax.config.update("jax_platforms", args.device)
    # Inputs and outputs are checked (from the headers) before the networks are loaded.
    request = plan(args.input, args.output, prob=args.prob, sdm=args.sdm)
    if args.workdir is not None:
        state, step = restore_state(method, config, args.workdir, args.checkpoint or "last")
        state = local_copy(state)
        nets, source = state.nets, f"{args.workdir} (step {step})"
    else:
        state, nets, source = None, _nets_from_torch(method, config, args.weights), args.weights
    print(f"jaxseg predict: {config.method} from {source}")
    results = predict_paths(
        method,
        config,
        nets,
        request,
        state=state,
        tta=args.tta,
        largest_component=bool(args.largest_component or config.eval.get("largest_component")),
        normalize=not args.no_normalize,
        report=print,
    )
    failed = sorted(case for case, result in results.items() if result != "ok")
    print(f"{len(results) - len(failed)} of {len(results)} case(s) predicted", end="")
    print(f"; failed: {', '.join(failed)}" if failed else "")
    return 1 if failed else 0


def _nets_from_torch(method, config, weights: str):
    """The method's networks with the weights of a reference PyTorch checkpoint."""
    import functools

    import jax

    from jaxseg.interop.torch import load_checkpoint

    if method.import_weights is None:
        raise ValueError(f"method {method.name!r} has no reference PyTorch weights to import")
    state = jax.jit(functools.partial(method.create_state, config))(jax.random.key(0))
    return method.import_weights(config, state, load_checkpoint(weights), weights)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxseg",
        description="Semi-supervised and shape-aware 3D medical image segmentation in JAX.",
    )
    parser.add_argument("--version", action="version", version=f"jaxseg {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="run the built-in demonstration on synthetic data and write figures",
        description="Integrate a random stationary velocity field, warp a synthetic volume "
        "and its label with it, measure inverse consistency, Jacobian, signed distance maps "
        "and surface metrics; then train a short semi-supervised SASSNet run on synthetic "
        "phantoms and evaluate it. Figures and metrics go to WORKDIR.",
    )
    demo.add_argument(
        "--workdir", default="runs/demo", help="output directory (default: %(default)s)"
    )
    demo.add_argument(
        "--size", type=int, default=96, help="volume edge in voxels (default: %(default)s)"
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.add_argument(
        "--train-steps",
        type=int,
        default=60,
        help="steps of the SASSNet training run; 0 skips it (default: %(default)s)",
    )
    demo.set_defaults(handler=_demo)

    configs = commands.add_parser(
        "configs",
        help="list the experiment configs shipped with jaxseg",
        description="List the configs that `jaxseg train NAME[:setting]` accepts, with a line "
        "on each; their files are jaxseg/configs/NAME.py.",
    )
    configs.set_defaults(handler=_configs)

    progress = argparse.ArgumentParser(add_help=False)
    progress.add_argument("--no-progress", action="store_true", help="no progress bars")
    overrides = argparse.ArgumentParser(add_help=False)
    overrides.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.steps=100 (repeatable)",
    )

    train = commands.add_parser(
        "train",
        parents=[overrides, progress],
        help="train a method from an experiment config, then evaluate it on the test cases",
        description="Train the method of CONFIG (a shipped config name such as sassnet:paper, "
        "see `jaxseg configs`, or a Python file with get_config(setting), e.g. "
        "experiments/sassnet/configs/la.py:paper) in WORKDIR, resuming from its latest "
        "checkpoint if there is one, then evaluate it: WORKDIR holds config.json, split.json, "
        "metrics.jsonl, checkpoints/, eval/metrics.json and figures. A WORKDIR of another "
        "config is refused (only --set train.steps=N may differ, to extend a run).",
    )
    train.add_argument(
        "config", help="shipped config name or config file, optionally followed by :setting"
    )
    train.add_argument("--workdir", required=True, help="run directory")
    train.add_argument(
        "--seeds",
        help="comma-separated seeds: one run per seed in WORKDIR/seed_<s>, summarised with "
        "mean and standard deviation in WORKDIR/seeds.json",
    )
    hosts = train.add_argument_group(
        "several processes",
        "run one process per host (or per GPU) with the same command and WORKDIR on a shared "
        "file system; the config's batch is the global one (see experiments/README.md)",
    )
    hosts.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address")
    hosts.add_argument("--num-processes", type=int, metavar="N", help="number of processes")
    hosts.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1")
    hosts.add_argument(
        "--distributed",
        action="store_true",
        help="initialise jax.distributed from the environment (SLURM, TPU pod slices, ...)",
    )
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser(
        "evaluate",
        parents=[overrides, progress],
        help="evaluate a trained run on its test cases, or score a folder of predictions",
        description="Evaluate the checkpoint of a run directory on its test cases with the "
        "run's eval settings (overridable with --set eval.KEY=VALUE); writes "
        "metrics.json and figures to WORKDIR/eval (or --output). With --weights FILE.pth "
        "and --config, evaluate a reference PyTorch V-Net (SASSNet/DTML state_dict) on the "
        "config's test cases instead.",
    )
    evaluate.add_argument("--workdir", help="run directory")
    folders = evaluate.add_argument_group(
        "folders", "score a folder of label maps against references, without a run"
    )
    folders.add_argument("--pred", metavar="DIR", help="predicted label maps (.nii/.nii.gz)")
    folders.add_argument("--ref", metavar="DIR", help="reference label maps, the same file names")
    folders.add_argument(
        "--labels", type=int, nargs="+", help="label values to score (default: all foreground)"
    )
    folders.add_argument(
        "--spacing-from",
        choices=("ref", "pred"),
        default="ref",
        help="whose voxel sizes give the distances in mm (default: ref)",
    )
    evaluate.add_argument(
        "--checkpoint", choices=("last", "best"), help="default: the run's eval.checkpoint"
    )
    evaluate.add_argument(
        "--weights",
        help="evaluate a reference PyTorch V-Net checkpoint (.pth) instead of the run's; "
        "needs --config",
    )
    evaluate.add_argument(
        "--output",
        metavar="DIR",
        help="write metrics.json and figures here instead of WORKDIR/eval (e.g. another "
        "protocol: --output WORKDIR/eval_lcc --set eval.largest_component=True); with --pred, "
        "summary.json and metrics.csv go here instead of the --pred folder",
    )
    evaluate.add_argument("--config", help="experiment config for --weights, CONFIG[:setting]")
    evaluate.set_defaults(handler=_evaluate)

    predict = commands.add_parser(
        "predict",
        parents=[overrides],
        help="segment NIfTI images (a file or a folder) with a trained run",
        description="Segment the NIfTI image INPUT, or every case of the folder INPUT (nnU-Net "
        "_0000 channel suffixes understood), with the networks of a run directory, and write "
        "the label maps to OUTPUT (a file, or a folder of <case id>.nii.gz) with each input's "
        "affine and header. Each image is resampled to the run's data.spacing and normalised "
        "as its training data, predicted, and brought back onto its own grid. Inputs and "
        "outputs are checked before any inference; an existing output is replaced only when "
        "its case succeeds. Exit status 1 when a case failed (they are listed). With "
        "--weights FILE.pth and --config, a reference PyTorch V-Net (SASSNet/DTML "
        "state_dict) is used instead of a run.",
    )
    predict.add_argument("--workdir", help="run directory")
    predict.add_argument(
        "-i", "--input", required=True, help="image (.nii or .nii.gz) or folder of images"
    )
    predict.add_argument(
        "-o", "--output", required=True, help="label map file (for a file input) or folder"
    )
    predict.add_argument("--prob", help="also write the probability maps here (file or folder)")
    predict.add_argument("--sdm", help="also write the predicted signed distance maps here")
    predict.add_argument("--checkpoint", choices=("last", "best"), help="default: last")
    predict.add_argument(
        "--largest-component",
        action="store_true",
        help="keep the largest connected component (the papers' NMS)",
    )
    predict.add_argument(
        "--tta", action="store_true", help="average over the mirrorings of every spatial axis"
    )
    predict.add_argument(
        "--blend", choices=("mean", "gaussian"), help="window blending (default: the run's)"
    )
    predict.add_argument("--batch-size", type=int, help="windows per network call")
    predict.add_argument(
        "--device",
        choices=("cpu", "gpu", "tpu"),
        help="the JAX platform to run on (default: JAX's choice)",
    )
    predict.add_argument(
        "--no-normalize",
        action="store_true",
        help="do not z-score images when the training data were stored normalised",
    )
    predict.add_argument("--weights", help="PyTorch V-Net checkpoint (.pth) to use instead")
    predict.add_argument("--config", help="experiment config for --weights, CONFIG[:setting]")
    predict.set_defaults(handler=_predict)

    bench = commands.add_parser(
        "bench",
        help="run the benchmark suites",
        description="Time jaxseg against installed peers (scipy, medpy, MONAI, PyTorch); "
        "medians after warm-up. With --out DIR, results go to DIR/<suite>-<platform>.json "
        "and .md; nothing is written otherwise.",
    )
    bench.add_argument(
        "--suite", action="append", help="suite to run (repeatable; default: all suites)"
    )
    bench.add_argument("--quick", action="store_true", help="fewer repeats")
    bench.add_argument("--out", metavar="DIR", help="write the results here")
    bench.set_defaults(handler=_bench)

    data = commands.add_parser("data", help="inspect data sets", description="Inspect data sets.")
    data_commands = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = data_commands.add_parser(
        "check", help="validate every case of a data set directory (exit 1 on any problem)"
    )
    check.add_argument("directory", help="a Decathlon NIfTI, LA h5 or letter-B PNG data set")
    check.add_argument("--json", dest="json_path", help="also write the report as JSON here")
    check.add_argument(
        "--num-classes", type=int, help="expected number of classes (default: from the data set)"
    )
    check.set_defaults(handler=_data_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

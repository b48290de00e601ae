"""Command line: `phiml-data {generate,inspect,migrate,import,export,run,evaluate} ...` (or `python -m phiml_data ...`).

Examples:
    phiml-data generate --config configs/default.yaml
    phiml-data inspect cache/burgers2d-<key>
    phiml-data migrate legacy_caches/ --config configs/default.yaml
    phiml-data import 1D_Burgers_Sols_Nu0.01.hdf5 --from pdebench --config configs/burgers1d.yaml
    phiml-data import shear_flow_00.hdf5 --from the_well --out recorded/   # no scenario of ours
    phiml-data export out.nc --config configs/default.yaml
    phiml-data run --config configs/default.yaml
    phiml-data evaluate outputs/default --indices 16-19
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
import traceback
import warnings
from pathlib import Path

from .config import ConfigError, load_run_config
from .formats import CacheError
from .layouts import LAYOUTS


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='phiml-data', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    debug = argparse.ArgumentParser(add_help=False)  # --debug before or after the command
    debug.add_argument(
        '--debug', action='store_true', default=argparse.SUPPRESS, help='show the full traceback of errors'
    )
    sub = parser.add_subparsers(dest='command', required=True)
    sub.add_parser = functools.partial(sub.add_parser, parents=[debug])
    gen = sub.add_parser('generate', help='simulate and cache the sims that are missing')
    _config_args(gen)
    gen.add_argument('--scheduler', help='address of a Dask scheduler (tcp://host:8786) to run the simulations on')
    gen.add_argument(
        '--workers', type=int, default=0, help='simulate in this many local processes (default: in this process)'
    )
    gen.add_argument('--batch-size', type=int, default=8, help='sims per chunk / vectorised run (default: %(default)s)')
    part = gen.add_mutually_exclusive_group()
    part.add_argument(
        '--shard',
        help="I/N: only block I of N equal blocks of the sims (SLURM arrays: $SLURM_ARRAY_TASK_ID/N); no locks",
    )
    part.add_argument(
        '--indices',
        help="only these sims, e.g. '0-99' or '3,7,10-12'; no locks: the sets of concurrent jobs must be disjoint",
    )
    gen.add_argument(
        '--verify', action='store_true', help='check every frame of every cached file (default: size and header only)'
    )
    ins = sub.add_parser('inspect', help='print what a cache directory holds')
    ins.add_argument('directory', help='a cache directory <cache_dir>/<scenario>-<key>')
    ins.add_argument(
        '--allow-pickle',
        action='store_true',
        help='allow reading formats whose loader unpickles (npz): only your own files',
    )
    mig = sub.add_parser('migrate', help='convert legacy torch.save caches into the cache of --config')
    mig.add_argument('legacy', nargs='+', help='legacy .pt files or a folder of them')
    _config_args(mig, positional_overrides=False)
    imp = sub.add_parser(
        'import', help='import a PDEBench or The Well HDF5 file into the cache of --config, or as recorded data (--out)'
    )
    imp.add_argument('path', help='the HDF5 file')
    imp.add_argument('--from', dest='layout', required=True, choices=sorted(LAYOUTS), help='the file layout')
    imp.add_argument(
        '--field', action='append', default=[], metavar='OURS=THEIRS[,THEIRS2]', help='map a field to dataset(s)'
    )
    imp.add_argument('--first-index', type=int, default=0, help='sim index of the first trajectory (default: 0)')
    imp.add_argument(
        '--out',
        metavar='DIR',
        help='no scenario of ours: cache the file as recorded data in DIR/cache and write DIR/config.yaml, which '
        '`run --config DIR/config.yaml` trains a network on',
    )
    _config_args(imp, positional_overrides=False)
    exp = sub.add_parser('export', help='export the cache of --config to netCDF or zarr (xarray, with coordinates)')
    exp.add_argument('path', help='output file (netcdf) or folder (zarr)')
    exp.add_argument('--format', choices=['netcdf', 'zarr'], default='netcdf')
    exp.add_argument('--indices', help="only these sims, e.g. '0-9'")
    exp.add_argument(
        '--overwrite', action='store_true', help='replace PATH even if it is not an earlier export (never a cache)'
    )
    _config_args(exp, positional_overrides=False)
    run = sub.add_parser('run', help='the whole pipeline: generate, split, train, evaluate, plot')
    _config_args(run)
    run.add_argument('--output', help='output folder (default: the config\'s `output`)')
    run.add_argument(
        '--overwrite', action='store_true', help='write into the output folder even if it holds an earlier run'
    )
    ev = sub.add_parser('evaluate', help="evaluate a finished run's model on any sims, without retraining")
    ev.add_argument(
        'run',
        help="a run's output folder (config.yaml, splits.json, checkpoints/ or physical/); a relative cache_dir is read from here",
    )
    ev.add_argument('--indices', help="sims, e.g. '100-119' (default: the run's test sims); missing ones are simulated")
    ev.add_argument('--checkpoint', choices=['best', 'last'], default='best', help='network checkpoint (default: best)')
    ev.add_argument('--output', help='output folder (default: a fresh RUN/evaluate, RUN/evaluate-2, ...)')
    ev.add_argument('--overwrite', action='store_true', help='write into --output even if it holds files')
    ev.add_argument('--quiet', action='store_true', help='no progress bars')
    parser.add_argument('--debug', action='store_true', help='show the full traceback of errors')
    args = parser.parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:  # the CLI owns this process: warnings go after the result
        try:
            check_only = os.environ.get('PHIML_DATA_CHECK_ONLY') == '1'
            status = _check_only(args) if check_only else _COMMANDS[args.command](args)
        except KeyboardInterrupt:
            if args.debug:
                traceback.print_exc()
            print(f"interrupted: {_KEPT[args.command]}", file=sys.stderr)
            return 130
        except (ConfigError, CacheError, ValueError, FileNotFoundError, RuntimeError, OSError) as err:
            if args.debug:
                traceback.print_exc()
                _print_warnings(caught)
            print(f"error: {err}", file=sys.stderr)
            if caught and not args.debug:
                print(f"({len(caught)} warnings before the error; --debug shows them)", file=sys.stderr)
            return 2
    _print_warnings(caught)
    return status


def _check_only(args) -> int:
    """`PHIML_DATA_CHECK_ONLY=1`: parse the arguments and read and check the config (a run's mode and test split too),
    do nothing else (what the README test runs each printed command line with)."""
    if getattr(args, 'config', None) and not getattr(args, 'out', None):
        cfg = _load(args)
        if args.command == 'run':
            from .modes import mode_of
            from .pipeline import check_test_split
            from .splits import split_sims

            mode_of(cfg)
            check_test_split(cfg, split_sims(range(cfg.data.n_sims), cfg.data.split, cfg.data.split_seed)['test'])
    print(f"ok: {args.command}")
    return 0


def _print_warnings(caught):
    """One line per distinct warning."""
    for text in dict.fromkeys(f"warning: {w.category.__name__}: {w.message}" for w in caught):
        print(text.replace('\n', ' '), file=sys.stderr)


_DEFAULT_CONFIG = 'configs/default.yaml'


def _config_args(p, positional_overrides=True):
    p.add_argument('--config', default=_DEFAULT_CONFIG, help='YAML run configuration (default: %(default)s)')
    p.add_argument('--n-sims', type=int, help='override data.n_sims')
    p.add_argument('--quiet', action='store_true', help='no progress bars')
    if positional_overrides:
        p.add_argument(
            'overrides',
            nargs='*',
            metavar='KEY=VALUE',
            help='override config keys, e.g. training.epochs=3 dataset.batch_size=64',
        )


_NUMBER = re.compile(r'[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+')


def parse_overrides(items) -> dict:
    """`['dataset.batch_size=64', 'output=out/x']` -> `{'dataset': {'batch_size': 64}, 'output': 'out/x'}` (values as YAML).

    Example:
        >>> parse_overrides(['training.epochs=3', 'scenario.resolution=[64, 64]', 'training.learning_rate=1e-3'])
        {'training': {'epochs': 3, 'learning_rate': 0.001}, 'scenario': {'resolution': [64, 64]}}
    """
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. training.epochs=3")
        section, _, name = key.partition('.')
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({err})") from None
        if isinstance(parsed, str) and _NUMBER.fullmatch(parsed):  # YAML 1.1 reads 1e-3 as a string
            parsed = float(parsed)
        if name:
            out.setdefault(section, {})[name] = parsed
        else:
            out[section] = parsed
    return out


def _load(args):
    overrides = parse_overrides(getattr(args, 'overrides', None) or [])
    if args.n_sims is not None:
        overrides.setdefault('data', {})['n_sims'] = args.n_sims
    return load_run_config(args.config, overrides)


def _generate(args):
    cfg = _load(args)
    dm = cfg.data_manager()
    sims = select_sims(cfg.data.n_sims, args.shard, args.indices)
    options = dict(
        batch_size=args.batch_size, progress=not args.quiet, verify=args.verify, claims=sims == cfg.data.n_sims
    )
    quarantined = set(_quarantined(dm.directory))
    if args.scheduler:
        from distributed import Client

        with Client(args.scheduler) as client:
            generated = dm.generate(sims, executor=client, **options)
    elif args.workers:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.workers) as pool:
            generated = dm.generate(sims, executor=pool, **options)
    else:
        generated = dm.generate(sims, **options)
    moved = sorted(set(_quarantined(dm.directory)) - quarantined)
    checked = 'every frame' if args.verify else 'size and header'
    print(
        f"checked {len(sims) if isinstance(sims, list) else sims} sims ({checked}); moved {len(moved)} broken files to "
        f"quarantine/{' ' + str(moved) if moved else ''}; simulated {len(generated)} sims{' ' + str(generated) if generated else ''}"
    )
    _print_summary(dm.summary())
    return 0


def _quarantined(directory: Path) -> list[str]:
    """Names of the files in a cache's `quarantine/` (without their reason files)."""
    folder = Path(directory) / 'quarantine'
    return [p.name for p in folder.iterdir() if not p.name.endswith('.reason.txt')] if folder.is_dir() else []


def select_sims(n_sims: int, shard: str = None, indices: str = None):
    """`n_sims`, or the sims of `--shard I/N` (block I of N contiguous blocks) or `--indices '0-99,120'`.

    Example:
        >>> select_sims(10, shard='1/3'), select_sims(10, indices='0-2,7')
        ([3, 4, 5], [0, 1, 2, 7])
    """
    if shard:
        try:
            i, n = (int(v) for v in shard.split('/'))
        except ValueError:
            raise ValueError(f"--shard {shard!r}: expected I/N with integers, e.g. 3/16") from None
        if not 0 <= i < n:
            raise ValueError(f"--shard {shard!r}: I must be in 0..N-1")
        return list(range(i * n_sims // n, (i + 1) * n_sims // n))
    if indices:
        out = []
        for part in indices.split(','):
            a, _, b = part.partition('-')
            try:
                low, high = int(a), int(b or a)
            except ValueError:
                raise ValueError(f"--indices {indices!r}: expected ranges like '0-99,120'") from None
            if high < low or low < 0:
                raise ValueError(
                    f"--indices {indices!r}: the range {part!r} is empty; expected LOW-HIGH with 0 <= LOW <= HIGH"
                )
            out += list(range(low, high + 1))
        return out
    return n_sims


def _inspect(args):
    """Reads only JSON (config, manifest) and, for formats that need no pickle or with --allow-pickle, one file header."""
    from .formats import get_format
    from .keys import key_payload
    from .manifest import Manifest, read_json, sim_file_name

    directory = Path(args.directory)
    if not (directory / 'config.json').exists():
        raise CacheError(f"{directory} is not a cache directory (no config.json)")
    saved = read_json(directory / 'config.json', 'the configuration of the cache')
    current = {k: v for k, v in saved.items() if k != 'key'}
    index = Manifest(directory, saved['key'], current)
    manifest = index.read()  # the index and the entries not yet compacted
    first = manifest[min(manifest)]['fields'] if manifest else {}
    _print_summary(
        {
            'directory': str(directory),
            'scenario': saved['params'],
            'format': saved['format'],
            'sims': len(manifest),
            'bytes': sum(e.get('bytes', 0) for e in manifest.values()),
            'fields': first,
        }
    )
    for path, (_, reason) in index.problems().items():
        print(f"note: malformed manifest entry {path} ({reason}); generate() moves it to quarantine/")
    try:
        from .config import scenario_from_params

        if key_payload(scenario_from_params(saved['params']), saved['format']) != current:
            print(
                f"note: written with other library versions or scenario code (key {saved['key']}); this installation would use another cache directory"
            )
    except (ConfigError, ValueError):
        print(f"note: scenario {saved['params'].get('scenario')!r} is not known to this installation")
    if manifest:
        fmt = get_format(saved['format'])
        path = directory / sim_file_name(min(manifest), fmt.suffix)  # never a path the manifest names (`../x`)
        if path.is_symlink():
            raise CacheError(f"{path} is a symbolic link (to {os.readlink(path)}); a cache reads only its own files")
        with fmt.open(path, allow_pickle=args.allow_pickle) as reader:
            meta = reader.header['metadata']
        print('metadata of the first sim:')
        for k in ('dt', 'bounds', 'resolution', 'fields'):
            print(f"  {k}: {json.dumps(meta[k])}")
    return 0


def _migrate(args):
    from .legacy import migrate_legacy

    cfg = _load(args)
    dm = cfg.data_manager()
    files = args.legacy[0] if len(args.legacy) == 1 else args.legacy
    written = migrate_legacy(files, dm, progress=not args.quiet)
    print(f"migrated {len(written)} sims into {dm.directory}")
    _print_summary(dm.summary())
    return 0


def _run(args):
    import yaml

    from .modes import mode_of
    from .pipeline import check_test_split, run_pipeline
    from .splits import split_sims

    cfg = _load(args)
    mode_of(cfg)  # a config the run cannot train is refused before anything is printed or simulated
    check_test_split(cfg, split_sims(range(cfg.data.n_sims), cfg.data.split, cfg.data.split_seed)['test'])
    output = Path(args.output or cfg.output)
    if not args.overwrite:
        output = fresh_folder(output)
    print(f'resolved config (the run saves it as {output / "config.yaml"}):')
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
    run_pipeline(cfg, output=output, progress=not args.quiet)
    return 0


def fresh_folder(path: Path) -> Path:
    """`path`, or where it holds files (an earlier run or evaluation), the first free `path-2`, `path-3`, ...

    Example:
        >>> fresh_folder(tmp / 'out') == tmp / 'out'
        True
    """
    path, n = Path(path), 1
    candidate = path
    while _holds_files(candidate):
        n += 1
        candidate = path.with_name(f'{path.name}-{n}')
    return candidate


def _holds_files(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def _evaluate(args):
    from .config import load_run_config
    from .evaluation import summarize
    from .manifest import write_json
    from .pipeline import evaluate_and_plot, load_model

    run = Path(args.run)
    if not (run / 'config.yaml').exists():
        raise FileNotFoundError(f"{run} is not the output folder of a run (no config.yaml)")
    cfg = load_run_config(run / 'config.yaml')
    sims = (
        select_sims(0, indices=args.indices) if args.indices else json.loads((run / 'splits.json').read_text())['test']
    )
    train = json.loads((run / 'splits.json').read_text())['train']  # their statistics normalise the model's inputs
    cfg.data_manager().generate(sorted(set(sims) | set(train)), progress=not args.quiet)  # whatever is missing
    model = load_model(cfg, run, args.checkpoint)
    out = Path(args.output) if args.output else fresh_folder(run / 'evaluate')
    if _holds_files(out) and not args.overwrite:
        raise FileExistsError(
            f"--output {out} holds files (an earlier run or evaluation); choose another folder, or pass --overwrite "
            f"to write into it"
        )
    out.mkdir(parents=True, exist_ok=True)
    metrics = evaluate_and_plot(cfg, model, sims, out)
    summary = summarize(metrics)
    write_json(out / 'metrics.json', {'sims': sims, 'summary': summary, 'per_step': metrics['fields']})
    print(f"wrote {out}: metrics.json, evaluation.csv, errors.png, rollout_*.png")
    for field, m in summary.items():
        print(
            f"{field}: mean relative L2 on sims {sims}: model {m['model']:.4f}, best baseline {m['best_baseline']} "
            f"{m[m['best_baseline']]:.4f}: {m['model_over_best_baseline']:.2f}x"
        )
    return 0


def _print_summary(s: dict):
    """Prints a `DataManager.summary()`-like dict."""
    print(f"cache: {s['directory']}")
    print(f"  scenario: {json.dumps(s['scenario'])}")
    print(f"  format: {s['format']}, sims: {s['sims']}, size: {s['bytes'] / 2**20:.2f} MiB")
    for name, info in s['fields'].items():
        print(f"  field {name}: {info['shape']} {info['dtype']}")


def _import(args):
    from .importers import import_benchmark

    fields = {k: v.split(',') for k, _, v in (f.partition('=') for f in args.field)} or None
    if args.out:
        return _import_recorded(args, fields)
    cfg = _load(args)
    dm = cfg.data_manager()
    written = import_benchmark(dm, args.path, args.layout, fields, first_index=args.first_index)
    print(
        f"imported {len(written)} trajectories of {args.path} as sims {written[0]}..{written[-1]} into {dm.directory}"
    )
    return 0


def _import_recorded(args, fields):
    """`import FILE --from LAYOUT --out DIR`: the file as recorded data (`scenarios.recorded.Recorded`), with a run
    config that trains a network on it."""
    import yaml

    from .importers import import_benchmark, scenario_from_file
    from .manager import DataManager
    from .splits import split_sims

    if args.config != _DEFAULT_CONFIG or args.n_sims is not None or args.first_index:
        raise ValueError("import --out writes its own config: --config, --n-sims and --first-index do not apply")
    out = Path(args.out)
    if _holds_files(out):
        raise FileExistsError(f"--out {out} holds files; choose an empty or new folder")
    scenario = scenario_from_file(args.path, args.layout, fields)
    dm = DataManager(out.absolute() / 'cache', scenario)
    n = len(import_benchmark(dm, args.path, args.layout, fields))
    split = [0.625, 0.125, 0.25] if n >= 8 else [0.5, 0.0, 0.5]
    if n < 2 or not split_sims(range(n), split)['test']:
        raise ValueError(f"{args.path} holds {n} trajectory: training and testing need at least 2")
    params = scenario.params()
    config = {
        'scenario': {'name': params.pop('scenario'), **params},
        'data': {'cache_dir': str(out.absolute() / 'cache'), 'n_sims': n, 'split': split},
        'dataset': {'n_targets': min(3, scenario.steps), 'batch_size': 16},
        'model': {'architecture': 'res_net', 'filters': 16, 'layers': 2},
        'training': {'mode': 'synthetic', 'epochs': 10},
        'evaluation': {'min_test_sims': len(split_sims(range(n), split)['test'])},
        'output': str(out.absolute() / 'run'),
    }
    (out / 'config.yaml').write_text(yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=False))
    print(f"imported {n} trajectories of {args.path} as recorded data into {dm.directory}")
    print(f"wrote {out / 'config.yaml'}: phiml-data run --config {out / 'config.yaml'}")
    return 0


def _export(args):
    from .export import export

    cfg = _load(args)
    dm = cfg.data_manager()
    sims = select_sims(cfg.data.n_sims, indices=args.indices) if args.indices else None
    print(f"wrote {export(dm, args.path, args.format, sims, overwrite=args.overwrite)}")
    return 0


_KEPT = {  # what Ctrl-C leaves behind, per command: files are renamed into place complete, so nothing is half-written
    'generate': "every sim written so far is complete and recorded; rerun generate to simulate the rest",
    'run': "the cache and the checkpoints written so far are complete (each is one commit); rerun to start again",
    'evaluate': "nothing of the run was changed; its evaluate folder may be incomplete",
    'import': "nothing was imported (an import writes all trajectories or none)",
    'migrate': "nothing was migrated (a migration writes all files or none)",
    'export': "nothing at the export path was changed",
    'inspect': "nothing was changed",
}

_COMMANDS = {
    'import': _import,
    'export': _export,
    'generate': _generate,
    'inspect': _inspect,
    'migrate': _migrate,
    'run': _run,
    'evaluate': _evaluate,
}

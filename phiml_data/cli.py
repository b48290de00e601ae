"""Command line: `python -m phiml_data {generate,inspect,migrate,run} ...`.

Examples:
    python -m phiml_data generate --config configs/default.yaml
    python -m phiml_data inspect cache/burgers2d-<key>
    python -m phiml_data migrate legacy_caches/ --config configs/default.yaml
    python -m phiml_data run --config configs/default.yaml
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import ConfigError, load_run_config, scenario_from_params


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m phiml_data', description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True)
    gen = sub.add_parser('generate', help='simulate and cache the sims that are missing')
    _config_args(gen)
    gen.add_argument('--scheduler', help='address of a Dask scheduler (tcp://host:8786) to run the simulations on')
    gen.add_argument('--workers', type=int, default=0, help='simulate in this many local processes (default: in this process)')
    ins = sub.add_parser('inspect', help='print what a cache directory holds')
    ins.add_argument('directory', help='a cache directory <cache_dir>/<scenario>-<key>')
    mig = sub.add_parser('migrate', help='convert legacy torch.save caches into the cache of --config')
    mig.add_argument('legacy', nargs='+', help='legacy .pt files or a folder of them')
    _config_args(mig)
    run = sub.add_parser('run', help='the whole pipeline: generate, split, train, evaluate, plot')
    _config_args(run)
    run.add_argument('--output', help='output folder (default: the config\'s `output`)')
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _config_args(p):
    p.add_argument('--config', default='configs/default.yaml', help='YAML run configuration (default: %(default)s)')
    p.add_argument('--n-sims', type=int, help='override data.n_sims')
    p.add_argument('--quiet', action='store_true', help='no progress bars')


def _load(args):
    overrides = {'data': {'n_sims': args.n_sims}} if args.n_sims else {}
    return load_run_config(args.config, overrides)


def _generate(args):
    from .manager import DataManager
    cfg = _load(args)
    dm = DataManager(cfg.data.cache_dir, cfg.scenario, cfg.data.format)
    if args.scheduler:
        from distributed import Client
        with Client(args.scheduler) as client:
            dm.generate(cfg.data.n_sims, executor=client, progress=not args.quiet)
    elif args.workers:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(args.workers) as pool:
            dm.generate(cfg.data.n_sims, executor=pool, progress=not args.quiet)
    else:
        dm.generate(cfg.data.n_sims, progress=not args.quiet)
    _print_summary(dm.summary())
    return 0


def _inspect(args):
    from .manager import FORMATS, DataManager
    directory = Path(args.directory)
    config_file = directory / 'config.json'
    if not config_file.exists():
        print(f"error: {directory} is not a cache directory (no config.json)", file=sys.stderr)
        return 2
    saved = json.loads(config_file.read_text())
    dm = DataManager(directory.parent, scenario_from_params(saved['params']), saved['format'])
    if dm.directory.resolve() != directory.resolve():
        print(f"warning: {directory} was written with other library versions (key {saved['key']}, now {dm.key})", file=sys.stderr)
        dm.directory = directory
    summary = dm.summary()
    _print_summary(summary)
    if summary['sims']:
        meta = FORMATS[dm.fmt][1](dm.path(dm.cached_indices()[0]), [])[1]  # no key check: inspect any version
        print('metadata of the first sim:')
        for k in ('dt', 'bounds', 'resolution', 'fields'):
            print(f"  {k}: {json.dumps(meta[k])}")
    return 0


def _migrate(args):
    from .legacy import migrate_legacy
    from .manager import DataManager
    cfg = _load(args)
    dm = DataManager(cfg.data.cache_dir, cfg.scenario, cfg.data.format)
    files = args.legacy[0] if len(args.legacy) == 1 else args.legacy
    written = migrate_legacy(files, dm, progress=not args.quiet)
    print(f"migrated {len(written)} sims into {dm.directory}")
    _print_summary(dm.summary())
    return 0


def _run(args):
    from .pipeline import run_pipeline
    cfg = _load(args)
    run_pipeline(cfg, output=args.output, progress=not args.quiet)
    return 0


def _print_summary(s: dict):
    print(f"cache: {s['directory']}")
    print(f"  scenario: {json.dumps(s['scenario'])}")
    print(f"  format: {s['format']}, sims: {s['sims']}, size: {s['bytes'] / 2 ** 20:.2f} MiB")
    for name, info in s['fields'].items():
        print(f"  field {name}: {info['shape']} {info['dtype']}")


_COMMANDS = {'generate': _generate, 'inspect': _inspect, 'migrate': _migrate, 'run': _run}

"""Notebook hygiene: stored outputs come from one clean run, so strict nbval has a reference to compare with."""

import json

import pytest

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / 'notebooks').glob('*.ipynb'))
TOPICS = ['caching', 'named_dimensions', 'batch_iteration', 'training', 'migration', 'extending', 'hybrid']


def test_numbered_notebooks_cover_the_pipeline():
    names = [p.stem for p in NOTEBOOKS]
    assert names == [f'{i:02d}_{t}' for i, t in enumerate(TOPICS, start=1)]


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_hygiene(path):
    nb = json.loads(path.read_text())
    assert nb['metadata']['kernelspec']['name'] == 'python3'
    code = [c for c in nb['cells'] if c['cell_type'] == 'code']
    assert [c['execution_count'] for c in code] == list(range(1, len(code) + 1)), (
        'execution counts must be 1..N from one clean run'
    )
    for c in code:
        ignored = 'nbval-ignore-output' in c['metadata'].get('tags', [])  # progress bars live only in such cells
        for out in c['outputs']:
            assert out['output_type'] != 'error', f'error output stored in {path.name}'
            assert ignored or out.get('name') != 'stderr', (
                f'stderr output stored in {path.name}: {"".join(out["text"])[:200]}'
            )
    assert sum('parameters' in c['metadata'].get('tags', []) for c in code) == 1
    assert nb['cells'][0]['cell_type'] == 'markdown' and ''.join(nb['cells'][0]['source']).startswith('# ')
    assert path.stat().st_size < 400_000, 'keep notebooks small: fewer or smaller figures'
    assert '/tmp/' not in path.read_text(), 'do not print temporary paths'
    assert 'NBVAL_' not in ''.join(''.join(c['source']) for c in code), (
        'mark cells with tags, not comments students read'
    )

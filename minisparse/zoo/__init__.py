"""The model zoo: the models shipped inside the package (`shipped`), and models trained once and cached (`trained`).

    from minisparse.zoo import shipped, trained
    model = shipped("1in16-s0@3000")           # a shipped model, by name: no training, no download
    model = trained(model_cfg, train_cfg)      # the first call trains (with a progress bar); later calls just load
"""

from .cache import cache_dir, default_search, find_run, metrics, model_key, trained, trained_run
from .packaged import FILES, build, manifest, provenance, shipped, shipped_names, shipped_path, unpack

__all__ = ["FILES", "build", "cache_dir", "default_search", "find_run", "manifest", "metrics", "model_key",
           "provenance", "shipped", "shipped_names", "shipped_path", "trained", "trained_run", "unpack"]

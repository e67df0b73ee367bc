"""Image features of a frozen image tower: CoOp's augmentation, encoding, and the on-disk cache.

The image tower is frozen and in eval mode (RN50's BatchNorm uses running statistics, as in
CoOp), so a feature depends only on the pixels fed in. Three feature modes follow from that:

- ``exact``: augment and encode every training batch online, as CoOp does.
- ``views``: encode V augmented views of each training image once, draw one per epoch.
  With V = epochs (the default) each epoch sees a fresh view of every image, which is CoOp's
  training distribution; only the particular crops differ from an ``exact`` run.
- ``center``: one centre-crop feature per image, no augmentation (a different training
  distribution; fast, and what linear probes use).

Every augmentation is drawn from its own ``torch.Generator`` seeded by a hash of what it is for
(``derive_seed``), never from global RNG state: view v of image ``ref`` is the same crop in every
process, for every backbone, whichever subset of the split was encoded first.

Cache layout: ``$PTNL_CACHE/features/<backbone>/<weights_id>/<dataset>/<split_source>/<split>-<view>[-<precision>].pt``
holding ``{"meta", "refs", "features"}``. A file grows as new images are asked for (few-shot
subsets of other seeds), is checked against its ``meta`` on load and rebuilt if stale, and is
written atomically (tmp file + ``os.replace``), so concurrent sweeps can only lose additions,
never corrupt a file.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from ptnl.core import paths
from ptnl.core.files import atomic_write_bytes
from ptnl.data.base import ImageFiles
from ptnl.data.content import file_digests
from ptnl.data.disk import check_images
from ptnl.models.clip import encode_images

# In every cache file's meta, so a file whose features were computed another way is rebuilt.
# Version 3: ResNet towers encode with BatchNorm folded into the convolutions, and every encoding
# batch is full (padded), so cached features do not depend on the cache's history.
# Version 4: rows of image files are keyed by their content (ref + sha256), not the ref alone.
CACHE_VERSION = 4
# CoOp's train augmentation (Dassl HEAD, which CoOp's configs use): RandomResizedCrop with
# torchvision's default scale and ratio, bicubic, then a horizontal flip with p = 0.5.
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3.0 / 4.0, 4.0 / 3.0)
FLIP_P = 0.5
AUGMENT_ID = "coop-rrc(0.08,1)-bicubic-flip0.5"
ENCODE_BATCH = 128
# Cache files read in this process, by path, while unchanged on disk (inode, mtime, size): at most
# this many bytes of features, least recently used first out (0: none kept).
MEMO_BYTES = 2 << 30
_MEMO: OrderedDict = OrderedDict()


def derive_seed(*parts) -> int:
    """A 63-bit seed from any tuple of str/int parts (stable across processes and platforms)."""
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def generator(*parts) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*parts))


# -- augmentation ------------------------------------------------------------------------------


def random_resized_crop_params(width: int, height: int, g: torch.Generator, scale=RRC_SCALE, ratio=RRC_RATIO):
    """torchvision's RandomResizedCrop.get_params, drawn from ``g`` instead of the global RNG."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))  # float32, as torchvision, so the crops match it bit for bit
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=g).item()
        aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=g)).item()
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, (1,), generator=g).item())
            j = int(torch.randint(0, width - w + 1, (1,), generator=g).item())
            return i, j, h, w
    # Fallback, as torchvision: the whole image clipped to the ratio range, centred.
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def augment(img: Image.Image, image_size: int, mean, std, g: torch.Generator) -> torch.Tensor:
    """CoOp's train transform: RandomResizedCrop(scale (0.08, 1), bicubic) -> flip -> normalise."""
    i, j, h, w = random_resized_crop_params(img.width, img.height, g)
    img = TF.resized_crop(img, i, j, h, w, [image_size, image_size], TF.InterpolationMode.BICUBIC)
    if torch.rand(1, generator=g).item() < FLIP_P:
        img = TF.hflip(img)
    return TF.normalize(TF.to_tensor(img), mean, std)


def view_transform(bundle, view: str, ref: str) -> Callable[[Image.Image], torch.Tensor]:
    """The transform giving view ``view`` ("center" or "aug<v>") of image ``ref``."""
    if view == "center":
        return bundle.preprocess
    m = re.fullmatch(r"aug(\d+)", view)
    if not m:
        raise ValueError(f"view must be 'center' or 'aug<v>' (e.g. 'aug3'), got {view!r}")
    g = generator("view", int(m.group(1)), ref)
    return lambda img: augment(img, bundle.image_size, bundle.mean, bundle.std, g)


def exact_batch(bundle, split, indices: Sequence[int], run_seed: int, epoch: int) -> torch.Tensor:
    """Pixels of one ``exact``-mode batch: a fresh augmentation per (run seed, epoch, image).

    ``bundle`` is anything with ``image_size``, ``mean`` and ``std`` (a CLIPBundle, or the
    image encoder visual fine-tuning trains).

    Seeding per image (not per batch) makes the crops independent of batch composition and of
    data-loader workers, so the benchmark's plain CoOp step sees exactly the same pixels.
    """
    out = []
    for i in indices:
        g = generator("exact", run_seed, epoch, split.refs[i])
        out.append(augment(split.load_image(int(i)), bundle.image_size, bundle.mean, bundle.std, g))
    return torch.stack(out)


# -- the cache ----------------------------------------------------------------------------------


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(s))


def cache_path(bundle, dataset, split: str, view: str, precision: str = "fp32"):
    # Half-precision features differ from fp32 ones by ~1e-2: they get files of their own.
    suffix = "" if precision == "fp32" else f"-{_safe(precision)}"
    return (
        paths.cache_dir()
        / "features"
        / _safe(bundle.name)
        / _safe(bundle.weights_id)
        / _safe(dataset.name)
        / _safe(dataset.split_source)
        / f"{_safe(split)}-{_safe(view)}{suffix}.pt"
    )


def _meta(bundle, dataset, split: str, view: str, precision: str) -> dict:
    return {
        "version": CACHE_VERSION,
        "backbone": bundle.name,
        "weights_id": bundle.weights_id,
        "dataset": dataset.name,
        "split_source": dataset.split_source,
        "split": split,
        "view": view,
        "image_size": int(bundle.image_size),
        "mean": [float(x) for x in bundle.mean],
        "std": [float(x) for x in bundle.std],
        "transform": "preprocess" if view == "center" else AUGMENT_ID,
        "precision": precision,
    }


def _load(path, meta) -> tuple[list[str], torch.Tensor | None, dict[str, int]]:
    """A cache file's refs, features and row of each ref; read once per process while the file
    is unchanged (``_MEMO``: a sweep's runs of one dataset read the same 50 view files)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return [], None, {}
    stamp = (st.st_ino, st.st_mtime_ns, st.st_size, json.dumps(meta, sort_keys=True))
    hit = _MEMO.get(path)
    if hit is not None and hit[0] == stamp:
        _MEMO.move_to_end(path)
        return hit[1], hit[2], hit[3]
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        ok = blob["meta"] == meta and len(blob["refs"]) == blob["features"].shape[0]
    except Exception as e:  # a truncated or foreign file: rebuild it
        warnings.warn(f"unreadable feature cache {path} ({e}); rebuilding it", stacklevel=3)
        return [], None, {}
    if not ok:
        warnings.warn(
            f"feature cache {path} was built for {blob['meta']}, not {meta}; rebuilding it", stacklevel=3
        )
        return [], None, {}
    refs, feats = list(blob["refs"]), blob["features"]
    pos = {r: k for k, r in enumerate(refs)}
    _remember(path, stamp, refs, feats, pos)
    return refs, feats, pos


def _remember(path, stamp, refs, feats, pos) -> None:
    if MEMO_BYTES <= 0:  # off: every call reads its files (the speed benchmark's reference)
        _MEMO.clear()
        return
    _MEMO[path] = (stamp, refs, feats, pos)
    _MEMO.move_to_end(path)
    while len(_MEMO) > 1 and sum(v[2].numel() * v[2].element_size() for v in _MEMO.values()) > MEMO_BYTES:
        _MEMO.popitem(last=False)


def _save(path, meta, refs, feats) -> None:
    buf = io.BytesIO()
    torch.save({"meta": meta, "refs": list(refs), "features": feats.contiguous()}, buf)
    atomic_write_bytes(path, buf.getvalue())
    st = path.stat()
    stamp = (st.st_ino, st.st_mtime_ns, st.st_size, json.dumps(meta, sort_keys=True))
    _remember(path, stamp, list(refs), feats.contiguous(), {r: k for k, r in enumerate(refs)})


def cached_features(
    bundle,
    dataset,
    split: str,
    indices: Sequence[int] | np.ndarray,
    views: Sequence[str] = ("center",),
    device="cpu",
    precision="fp32",
    batch_size: int = ENCODE_BATCH,
    progress: bool = False,
) -> torch.Tensor:
    """Features [len(views), len(indices), E] (float32, CPU) of images ``indices`` of ``split``.

    Loads what the cache has, encodes only what is missing (each image decoded once for all
    its missing views), and writes the grown files back atomically. Before encoding, every image
    to encode is checked to exist and be readable (``ptnl.data.check_images``): a missing or
    truncated file is an error in seconds, naming the dataset, the split and the files, not
    minutes into the encoding.
    """
    sp = getattr(dataset, split)
    if sp is None:
        raise ValueError(f"dataset {dataset.name!r} has no {split!r} split")
    idx = np.asarray(indices, dtype=np.int64)
    want = [sp.refs[i] for i in idx]
    check_images(sp, want)
    # Rows are keyed by what the image holds (ref + content digest, ptnl.data.content): a file
    # changed under the same path is encoded anew, an unchanged one never is.
    keys = content_keys(sp, want)
    ref_of = dict(zip(keys, want))
    state = {}
    todo: dict[str, list[str]] = {}  # key -> views it still needs
    for v in views:
        meta = _meta(bundle, dataset, split, v, precision)
        path = cache_path(bundle, dataset, split, v, precision)
        refs, feats, pos = _load(path, meta)
        state[v] = (path, meta, refs, feats, pos)
        for key in dict.fromkeys(keys):
            if key not in state[v][4]:
                todo.setdefault(key, []).append(v)
    if todo:
        new = _encode_missing(
            bundle, sp, {ref_of[k]: vs for k, vs in todo.items()}, device, precision, batch_size, progress
        )
        for v in views:
            path, meta, refs, feats, pos = state[v]
            add = [k for k in todo if v in todo[k]]
            if not add:
                continue
            # Rows of the same refs with another content stay: another data root may hold those.
            block = torch.stack([new[(ref_of[k], v)] for k in add])
            feats = block if feats is None else torch.cat([feats, block])
            refs = refs + add
            _save(path, meta, refs, feats)
            state[v] = (path, meta, refs, feats, {r: k for k, r in enumerate(refs)})
    out = []
    for v in views:
        _, _, _, feats, pos = state[v]
        out.append(feats[torch.as_tensor([pos[k] for k in keys], dtype=torch.long)])
    return torch.stack(out)


_KEY_SEP = "\0"  # ref NUL sha256: a path never holds a NUL


def content_keys(sp, refs: Sequence[str]) -> list[str]:
    """The feature cache's row keys of ``refs``: ``ref`` NUL ``sha256 of the file`` for image files,
    the ref itself for images that are code (the toy world) or held in memory."""
    files = sp.image_loader
    if not isinstance(files, ImageFiles):
        return list(refs)
    digests = file_digests([files.path(r) for r in refs])
    return [f"{r}{_KEY_SEP}{d}" for r, d in zip(refs, digests)]


def _encode_missing(bundle, sp, todo, device, precision, batch_size, progress):
    ref_index = {r: i for i, r in enumerate(sp.refs)}
    jobs = [(r, v) for r, vs in todo.items() for v in vs]
    out = {}
    pending, keys = [], []

    def flush():
        # Always a full batch (the last one padded by repeating its first image): convolution
        # kernels are picked by batch size, so an image's features would otherwise depend on how
        # many others happened to be missing from the cache with it (~1e-6 on a ResNet tower),
        # and the same config could give different numbers after a different cache history.
        x = torch.stack(pending)
        if len(x) < batch_size:
            x = torch.cat([x, x[:1].expand(batch_size - len(x), *x.shape[1:])])
        feats = encode_images(bundle, x, precision)[: len(pending)].cpu()
        out.update(zip(keys, feats))
        pending.clear()
        keys.clear()

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc=f"encoding {len(todo)} images", unit="view", leave=False)
    try:  # the bar is closed on an error too, so the error starts a line of its own
        for r, vs in todo.items():
            img = sp.load_image(ref_index[r])  # decoded once for all of its views
            for v in vs:
                pending.append(view_transform(bundle, v, r)(img))
                keys.append((r, v))
                if len(pending) == batch_size:
                    flush()
                    if bar is not None:
                        bar.update(batch_size)
        if pending:
            n = len(pending)
            flush()
            if bar is not None:
                bar.update(n)
    finally:
        if bar is not None:
            bar.close()
    return out


# -- a run's features ------------------------------------------------------------------------------
# ``r`` below is a prepared run (ptnl.train.engine.Run): its config, bundle, dataset, few-shot
# indices, device and resolved precision.


def train_bank(r, progress=False) -> torch.Tensor:
    """[V, N, E] training features: V augmented views (views mode) or V = 1 centre crop."""
    views = (
        ["center"] if r.cfg.feature_mode == "center" else [f"aug{v}" for v in range(r.cfg.views_per_image)]
    )
    return cached_features(
        r.bundle, r.dataset, "train", r.train_idx, views, r.device, r.precision, progress=progress
    )


def center_bank(r) -> torch.Tensor:
    """[1, N, E] centre-crop features of the run's training images (what ``exact`` mode scores on)."""
    return cached_features(r.bundle, r.dataset, "train", r.train_idx, ["center"], r.device, r.precision)


def test_features(r, progress=False) -> torch.Tensor:
    idx = np.arange(len(r.dataset.test))
    return cached_features(
        r.bundle, r.dataset, "test", idx, ["center"], r.device, r.precision, progress=progress
    )[0]


def view_schedule(n: int, n_views: int, epochs: int, g: torch.Generator) -> torch.Tensor:
    """[epochs, n] view index per epoch and sample: each sample cycles through a fresh random
    permutation of its V views every V epochs, so with V = epochs every view is used once."""
    out = torch.empty(epochs, n, dtype=torch.long)
    for start in range(0, epochs, n_views):
        perms = torch.argsort(torch.rand(n, n_views, generator=g), dim=1)  # [n, V]
        stop = min(epochs, start + n_views)
        out[start:stop] = perms[:, : stop - start].T
    return out


def epoch_batches(n: int, batch_size: int, g: torch.Generator) -> list[torch.Tensor]:
    """One epoch of a shuffled loader with Dassl's drop_last (only when n >= batch_size)."""
    perm = torch.randperm(n, generator=g)
    if n < batch_size:
        return [perm]
    return list(perm[: (n // batch_size) * batch_size].split(batch_size))


def feature_source(r, progress=False, bank: torch.Tensor | None = None):
    """``fn(epoch, batch) -> features [B, E]`` on the run's device, for the config's feature mode
    (``bank``: the run's ``train_bank``, when the caller already holds it)."""
    cfg = r.cfg
    if cfg.feature_mode == "exact":
        split = r.dataset.train

        def exact(epoch, batch):
            pixels = exact_batch(r.bundle, split, r.train_idx[batch.numpy()], cfg.seed, epoch)
            return encode_images(r.bundle, pixels, r.precision)

        return exact
    bank = train_bank(r, progress) if bank is None else bank
    schedule = view_schedule(r.n_train, bank.shape[0], cfg.epochs, generator("views", cfg.seed))
    bank = bank.to(r.device)

    def cached(epoch, batch):
        return bank[schedule[epoch - 1, batch].to(r.device), batch.to(r.device)]

    return cached

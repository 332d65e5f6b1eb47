"""Known model names and where their files are found.

Lookup order for a name: an explicit path; ``$ANYCOST_MODELS_DIR``; the user's models
directory (``$XDG_DATA_HOME/anycost/models``, i.e. ``~/.local/share/anycost/models``); models
shipped inside the package. A download is only tried when a download URL is configured
(``$ANYCOST_DOWNLOAD_URL`` or ``download_url`` in ``$XDG_CONFIG_HOME/anycost/config.json``);
the published host of the official weights is gone, so nothing depends on it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelNotFoundError
from .models.generator import GeneratorConfig

PACKAGE_MODELS = Path(__file__).resolve().parent / "assets" / "models"
# The model used when none is named: the demo model shipped inside the package.
DEFAULT_MODEL = "anycost-demo"
MODEL_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".pkl")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    filenames: tuple[str, ...]  # accepted local file names, preferred first
    architecture: GeneratorConfig | None = None
    sha256: str | None = None
    channel_configs: str = "uniform"  # 'uniform', 'flexible' or 'full' (plain StyleGAN2)
    # Whether the model generates faces: face detection and FFHQ alignment only make sense then.
    # A model file's own info["face"] takes precedence.
    face: bool = True
    extra: dict = field(default_factory=dict)


def _official(name: str, res: int, description: str, channel_configs: str, face: bool = True) -> ModelSpec:
    return ModelSpec(
        name=name,
        description=description,
        filenames=(f"{name}.safetensors", f"{name}.pt"),
        architecture=GeneratorConfig(resolution=res, style_dim=512, n_mlp=8, channel_multiplier=2, channel_max=512),
        channel_configs=channel_configs,
        face=face,
    )


KNOWN_MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec(DEFAULT_MODEL, "Demo faces 128px trained on the synthetic face dataset (shipped)",
                  (f"{DEFAULT_MODEL}.safetensors",)),
        _official("anycost-ffhq-config-f", 1024, "Anycost GAN, FFHQ faces 1024px, uniform channel ratios",
                  "uniform"),
        _official("anycost-ffhq-config-f-flexible", 1024,
                  "Anycost GAN, FFHQ faces 1024px, flexible per-layer channels", "flexible"),
        _official("anycost-car-config-f", 512, "Anycost GAN, LSUN cars 512px, uniform channel ratios", "uniform",
                  face=False),
        _official("stylegan2-ffhq-config-f", 1024, "StyleGAN2 config-f, FFHQ faces 1024px (full model only)",
                  "full"),
    )
}


def spec_for(name_or_path: str | os.PathLike) -> ModelSpec | None:
    """The registered model a name or a file stands for: by name, else by one of its file names
    (``…/anycost-car-config-f.pt``); None for anything else."""
    text = str(name_or_path)
    if text in KNOWN_MODELS:
        return KNOWN_MODELS[text]
    filename = Path(text).name
    return next((s for s in KNOWN_MODELS.values() if filename in s.filenames), None)


def user_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "anycost"


def user_config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "anycost"


def models_dirs() -> list[Path]:
    """Folders searched for model files, highest priority first."""
    dirs = []
    env = os.environ.get("ANYCOST_MODELS_DIR")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs.append(user_data_dir() / "models")
    dirs.append(PACKAGE_MODELS)
    return dirs


def user_models_dir() -> Path:
    """Where downloads go and where users are told to put files."""
    env = os.environ.get("ANYCOST_MODELS_DIR")
    if env:
        return Path(env.split(os.pathsep)[0])
    return user_data_dir() / "models"


def download_base_url() -> str | None:
    url = os.environ.get("ANYCOST_DOWNLOAD_URL")
    if url:
        return url
    cfg = user_config_dir() / "config.json"
    if cfg.is_file():
        try:
            return json.loads(cfg.read_text()).get("download_url") or None
        except (OSError, json.JSONDecodeError):
            return None
    return None


def find_local(name: str) -> Path | None:
    """The first existing file for a registered or free-form model name, or None."""
    spec = KNOWN_MODELS.get(name)
    names = spec.filenames if spec else tuple(name + s for s in MODEL_SUFFIXES)
    for d in models_dirs():
        for fn in names:
            p = d / fn
            if p.is_file():
                return p
    return None


def resolve_model(name_or_path: str | os.PathLike, *, allow_download: bool = True) -> Path:
    """Path of a model given as a file path or a name; downloads only when configured."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    text = str(name_or_path)
    if os.sep in text or p.suffix in MODEL_SUFFIXES:
        raise ModelNotFoundError(f"model file not found: {p}")
    local = find_local(text)
    if local is not None:
        return local
    spec = KNOWN_MODELS.get(text)
    where = user_models_dir()
    if spec is None:
        known = ", ".join(sorted(set(KNOWN_MODELS) | set(available_names())))
        raise ModelNotFoundError(f"unknown model {text!r}; known names: {known}. A file path also works.")
    url = download_base_url()
    hint = (f"put {' or '.join(reversed(spec.filenames))} into {where} "
            f"(or set ANYCOST_MODELS_DIR), or pass --model PATH")
    if not allow_download or not url:
        raise ModelNotFoundError(f"model {text!r} is not installed: {hint}.")
    from .download import DownloadError, download

    target = where / spec.filenames[-1]
    try:
        return download(url.rstrip("/") + "/" + spec.filenames[-1], target, sha256=spec.sha256)
    except DownloadError as e:
        raise ModelNotFoundError(f"model {text!r} is not installed and the download failed ({e}): {hint}.") from e


def available_names() -> list[str]:
    """Names of model files found in the search folders (registered or not)."""
    out = []
    for d in models_dirs():
        if d.is_dir():
            for p in sorted(d.iterdir()):
                if p.is_file() and p.suffix in MODEL_SUFFIXES and not p.name.startswith("."):
                    out.append(p.stem)
    return sorted(set(out))


@dataclass
class ModelStatus:
    name: str
    description: str
    path: Path | None

    @property
    def installed(self) -> bool:
        return self.path is not None


def list_models() -> list[ModelStatus]:
    """Registered models (installed or not) followed by other model files found locally."""
    rows = [ModelStatus(n, s.description, find_local(n)) for n, s in KNOWN_MODELS.items()]
    registered_files = {fn for s in KNOWN_MODELS.values() for fn in s.filenames}
    seen = set(KNOWN_MODELS)
    for d in models_dirs():
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if (p.is_file() and p.suffix in MODEL_SUFFIXES and p.name not in registered_files
                    and p.stem not in seen and not p.name.startswith(".")):
                seen.add(p.stem)
                rows.append(ModelStatus(p.stem, "local model file", p))
    return rows


def load_registered_generator(name_or_path: str | os.PathLike, *, device: str = "cpu",
                              allow_download: bool = True):
    """Resolve a model name or path and load its generator; a registered name pins the architecture."""
    from .io.checkpoint import load_generator

    path = resolve_model(name_or_path, allow_download=allow_download)
    spec = KNOWN_MODELS.get(str(name_or_path))
    return load_generator(path, device=device, expect=spec.architecture if spec else None)

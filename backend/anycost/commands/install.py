"""``anycost install|uninstall|package HOST``: put the host plugins in place, or build their packages."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import AnycostError

HOSTS = ("krita", "gimp")  # each host has a module anycost_installers.<host> with install/uninstall(/package)
PACKAGE_HOSTS = ("krita",)
HOST_NAMES = {"krita": "Krita", "gimp": "GIMP"}
# options that apply to one host only (argparse dest → host): given for the other host they are errors
HOST_ONLY_OPTIONS = {"pykrita_dir": "krita", "kritarc": "krita", "krita": "krita", "purge": "krita",
                     "plug_ins_dir": "gimp", "gimp": "gimp", "vendor": "gimp"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("install", help="install a host plugin (Krita, GIMP)",
                       description="Install the plugin into a host program's profile: copies it (or links it with "
                                   "--link), vendors pyzmq and msgpack wheels for the host's own Python, enables "
                                   "it, and records this environment's backend command for the plugin to start.")
    p.add_argument("host", choices=HOSTS)
    p.add_argument("--pykrita-dir", help="Krita's pykrita folder (default: the user's Krita resource folder)")
    p.add_argument("--kritarc", help="Krita's configuration file to enable the plugin in (default: the user's)")
    p.add_argument("--krita", help="Krita's binary or install folder, to find its Python version")
    p.add_argument("--link", action="store_true", help="link to the sources instead of copying (development)")
    p.add_argument("--python-version", help="the host's Python version, e.g. 3.10 (default: detected)")
    p.add_argument("--platform", help="platform of the vendored wheels, e.g. win_amd64 (default: this machine's)")
    p.add_argument("--wheel-dir", help="folder with pyzmq/msgpack wheels (offline install); else pip downloads them")
    p.add_argument("--offline", action="store_true", help="never download wheels (use --wheel-dir or the cache)")
    p.add_argument("--no-vendor", action="store_true",
                   help="vendor nothing: the host's Python already has pyzmq and msgpack")
    p.add_argument("--backend-command", help="command the plugin runs to start a backend "
                                             "(default: this Python with '-m anycost serve')")
    g = p.add_argument_group("GIMP")
    g.add_argument("--plug-ins-dir", help="GIMP's plug-ins folder (default: the user's, e.g. "
                                          "~/.config/GIMP/3.0/plug-ins)")
    g.add_argument("--gimp", help="GIMP's install folder or GIMP.app, to find its bundled Python")
    g.add_argument("--vendor", action="store_true",
                   help="vendor pyzmq/msgpack even on Linux (a Flatpak or AppImage GIMP with its own Python)")
    p.set_defaults(func=run_install)

    u = sub.add_parser("uninstall", help="remove a host plugin", description="Remove an installed host plugin.")
    u.add_argument("host", choices=HOSTS)
    u.add_argument("--pykrita-dir", help="Krita's pykrita folder (default: the user's)")
    u.add_argument("--kritarc", help="Krita's configuration file (default: the user's)")
    u.add_argument("--plug-ins-dir", help="GIMP's plug-ins folder (default: the user's)")
    u.add_argument("--purge", action="store_true",
                   help="Krita: also remove the plugin's settings from kritarc (group [anycost_face_edit])")
    u.set_defaults(func=run_uninstall)

    k = sub.add_parser("package", help="build a host plugin's installable package (Krita zip)",
                       description="Build the zip that Krita's Tools ▸ Scripts ▸ Import Python Plugin from File… "
                                   "accepts, with pyzmq/msgpack vendored for several platforms and Python versions.")
    k.add_argument("host", choices=PACKAGE_HOSTS)
    k.add_argument("-o", "--output", required=True, help="zip file to write, e.g. anycost_krita.zip")
    k.add_argument("--python-version", action="append", dest="python_versions",
                   help="Python version to vendor for (repeatable; default: 3.8 to 3.13)")
    k.add_argument("--platform", action="append", dest="platforms",
                   help="platform to vendor for (repeatable; default: win_amd64 macosx_x86_64 macosx_arm64 "
                        "linux_x86_64)")
    k.add_argument("--wheel-dir", help="folder with the wheels (offline); else pip downloads them")
    k.add_argument("--offline", action="store_true", help="never download wheels")
    k.set_defaults(func=run_package)


def _installer(host: str):
    import importlib

    try:
        return importlib.import_module(f"anycost_installers.{host}")
    except ImportError as e:
        raise AnycostError(f"the {host} installer is not available: {e}") from e


@contextmanager
def _installer_errors(mod) -> Iterator[None]:
    """The installers' errors (one ``InstallError`` for both hosts) are the command's one-line errors."""
    try:
        yield
    except mod.InstallError as e:
        raise AnycostError(str(e)) from e


def _check_options(args: argparse.Namespace) -> None:
    """Another host's options and contradictory flags are errors, never silently ignored."""
    for dest, host in HOST_ONLY_OPTIONS.items():
        if host != args.host and getattr(args, dest, None) not in (None, False):
            raise AnycostError(f"--{dest.replace('_', '-')} applies to {HOST_NAMES[host]} only, not to "
                               f"{HOST_NAMES[args.host]}")
    if getattr(args, "vendor", False) and getattr(args, "no_vendor", False):
        raise AnycostError("--vendor and --no-vendor contradict each other: give one of them")


def run_install(args: argparse.Namespace) -> int:
    from anycost_client.backend_launcher import parse_command

    _check_options(args)
    mod = _installer(args.host)
    command = parse_command(args.backend_command) or None
    common = dict(link=args.link, python_version=args.python_version, platform=args.platform,
                  wheel_dir=args.wheel_dir, download=not args.offline, backend_command=command)
    with _installer_errors(mod):
        if args.host == "gimp":
            report = mod.install(args.plug_ins_dir, gimp=args.gimp, **common,
                                 vendor_wheels=False if args.no_vendor else (True if args.vendor else None))
        else:
            report = mod.install(args.pykrita_dir, krita=args.krita, kritarc=args.kritarc, **common,
                                 vendor_wheels=not args.no_vendor)
    (_tell_gimp if args.host == "gimp" else _tell_krita)(report)
    return 0


def _tell_krita(report) -> None:
    print(f"installed the Krita plugin {'(linked) ' if report.linked else ''}into {report.plugin_dir}")
    print(f"  Krita's Python: {report.python_version} (from {report.python_source})")
    if report.vendored:
        print(f"  vendored for it: {', '.join(report.vendored)}")
    print(f"  enabled in {report.kritarc}; shortcut and menu text in {report.action}")
    print(f"  backend command: {shlex.join(report.backend_command)}")
    for warning in report.warnings:
        print(f"  warning: {warning}")
    print("Restart Krita, then use Filter ▸ Anycost Face Edit… (Ctrl+Alt+Shift+F).")


def _tell_gimp(report) -> None:
    print(f"installed the GIMP plug-in {'(linked) ' if report.linked else ''}into {report.plugin_dir}")
    if report.vendored:
        print(f"  vendored for GIMP's Python {report.python_version} (from {report.python_source}): "
              f"{', '.join(report.vendored)}")
    print(f"  backend command: {shlex.join(report.backend_command)}")
    found = report.gimp_python
    if found is not None and found.python and found.missing == []:
        print(f"  GIMP's Python: {found.python} ({found.how}) imports pyzmq and msgpack")
    for note in report.notes:
        print(f"  note: {note}")
    print("Restart GIMP, then select a face and use Filters ▸ Anycost Face Edit…")


def run_uninstall(args: argparse.Namespace) -> int:
    _check_options(args)
    mod = _installer(args.host)
    with _installer_errors(mod):
        if args.host == "gimp":
            removed = mod.uninstall(args.plug_ins_dir)
        else:
            removed = mod.uninstall(args.pykrita_dir, kritarc=args.kritarc, purge=args.purge)
    if not removed:
        print("nothing to remove: the plugin is not installed there")
    for p in removed:  # a settings file that stays only lost the plugin's entries
        print(f"updated {p} (the plugin's entries taken out)" if p.is_file() else f"removed {p}")
    return 0


def run_package(args: argparse.Namespace) -> int:
    mod = _installer(args.host)
    kw = {}
    if args.python_versions:
        kw["python_versions"] = tuple(args.python_versions)
    if args.platforms:
        kw["platforms"] = tuple(args.platforms)
    with _installer_errors(mod):
        out = mod.package(args.output, wheel_dir=args.wheel_dir, download=not args.offline, **kw)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): import it in Krita with Tools ▸ Scripts ▸ "
          "Import Python Plugin from File…")
    return 0

"""One cache key per demo artefact, whatever the entry point: `scaling demo --export-backbones --quick` exports
what a full `scaling demo` already built instead of building quick copies (issue: 42 minutes rebuilt)."""

from scaling.demo import cache as cache_mod
from scaling.demo.run import FULL, QUICK, artefact_specs, build_data_and_backbones


class NoBuild:
    def run(self, jobs, on_done=None):
        raise AssertionError(f"nothing should be built, got jobs {[j[0] for j in jobs]}")


def _prebuild(cache_dir, settings):
    paths = {}
    for name, spec in artefact_specs(settings, 0).items():
        paths[name], _, _ = cache_mod.build_or_reuse(str(cache_dir), name, spec, lambda tmp: {"seconds": 1})
    return paths


def test_quick_export_reuses_the_full_demos_artefacts(tmp_path):
    full = _prebuild(tmp_path, FULL)
    built = build_data_and_backbones(NoBuild(), QUICK, str(tmp_path), str(tmp_path / "out"), 0, False, lambda m: None,
                                     reuse_from=(FULL,))
    assert {name: v["path"] for name, v in built.items()} == {k: full[k] for k in ("vit", "llm", "data")}
    assert all(v["reused"] for v in built.values())


def test_the_demo_and_the_export_share_one_key_per_artefact(tmp_path):
    quick = _prebuild(tmp_path, QUICK)  # what `scaling demo --quick` leaves
    built = build_data_and_backbones(NoBuild(), QUICK, str(tmp_path), str(tmp_path / "out"), 0, False, lambda m: None,
                                     reuse_from=(FULL,))
    assert built["llm"]["path"] == quick["llm"] and built["vit"]["path"] == quick["vit"]


def test_without_a_cached_alternative_the_missing_artefacts_are_built(tmp_path):
    class Record:
        jobs = []

        def run(self, jobs, on_done=None):
            Record.jobs = [j[0] for j in jobs]
            return {}

    build_data_and_backbones(Record(), QUICK, str(tmp_path), str(tmp_path / "out"), 0, False, lambda m: None,
                             reuse_from=(FULL,))
    assert Record.jobs == ["vit", "llm", "data"]

"""CLAP as DePALM used it (depalm/models/perceptual/audio.py CLAPExtractor, config/feat_model/clap.yaml): from a full
CLAP checkpoint, the pooled audio embedding and the 1024 fine-grained frame embeddings (the final feature map
averaged over frequency, each time step repeated to 1024 frames), all 1025 through the audio projection and
L2-normalised per token, the same tensor as each of 8 levels; the HTSAT blocks stay available (clap_levels=blocks)."""

import pytest
import torch
from transformers import ClapConfig, ClapModel

from scaling.config.base import ConfigError
from scaling.models.backbones import load_encoder
from scaling.models.encoders.hf_clap import SHAPES
from scaling.models.extract import FeatureExtractor


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory):
    audio = SHAPES["tiny-clap"]().to_dict()
    text = {"vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 37,
            "projection_dim": 16, "max_position_embeddings": 40, "projection_hidden_size": 32}
    torch.manual_seed(0)
    model = ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=16)).eval()
    path = str(tmp_path_factory.mktemp("clap") / "clap")
    model.save_pretrained(path)
    return path, model


def test_a_full_clap_checkpoint_gives_depalms_1025_projected_normalised_tokens_as_8_levels(clap_dir):
    path, full = clap_dir
    enc = load_encoder(path, "fp32")
    info = enc.info
    assert (info.hidden_size, info.n_layers, info.has_cls, info.n_patches) == (16, 8, True, 1024)
    mel = torch.randn(2, info.max_length, info.num_mel_bins, generator=torch.Generator().manual_seed(0))
    feats = FeatureExtractor(enc, n_levels=8, tokens="all", norm="auto")(mel)  # auto: none (clap.yaml norm: null)
    assert feats.shape == (2, 8, 1025, 16)
    for level in range(1, 8):
        assert torch.equal(feats[:, level], feats[:, 0])
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(2, 8, 1025), atol=1e-5, rtol=0)
    with torch.no_grad():
        # the pooled token: CLAP's own audio embedding (projection of the pooled output, normalised)
        pooled = full.get_audio_features(input_features=mel[:, None])
        pooled = pooled.pooler_output if hasattr(pooled, "pooler_output") else pooled
        torch.testing.assert_close(feats[:, 0, 0], pooled, atol=1e-5, rtol=1e-5)
        # the frame tokens: the final map [B, C, freq, T] averaged over freq, step t repeated 1024 / T times
        fmap = full.audio_model(input_features=mel[:, None]).last_hidden_state
        steps = fmap.mean(2).transpose(1, 2)
        repeat = 1024 // steps.shape[1]
        expected = torch.nn.functional.normalize(full.audio_projection(steps), dim=-1).repeat_interleave(repeat, dim=1)
    torch.testing.assert_close(feats[:, 0, 1:], expected, atol=1e-5, rtol=1e-5)


def test_clap_levels_blocks_keeps_the_htsat_blocks_and_a_wrong_value_is_refused(clap_dir):
    path, _ = clap_dir
    blocks = load_encoder(path, "fp32", clap_levels="blocks")
    tower = load_encoder("tiny-clap", "fp32")
    assert blocks.info.hidden_size == tower.info.hidden_size and blocks.info.grid == tower.info.grid
    assert blocks.info.n_layers == tower.info.n_layers
    with pytest.raises(ConfigError, match="clap_levels"):
        load_encoder(path, "fp32", clap_levels="pooled")

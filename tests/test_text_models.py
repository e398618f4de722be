"""Tiny text students: shapes, padding masked, a pruned vocabulary that maps unseen tokens to one row."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from toolkit.models import TEXT_MODELS  # noqa: E402
from toolkit.models.text import TokenEmbedding  # noqa: E402


def test_a_pruned_vocabulary_gives_kept_tokens_their_own_rows():
    emb = TokenEmbedding(100, 4, keep_ids=[0, 7, 42, 99])
    assert emb.embed.num_embeddings == 2 + 3  # padding, unseen, 7, 42, 99
    rows = emb.row[torch.tensor([0, 7, 42, 99, 5, 50])].tolist()
    assert rows == [0, 2, 3, 4, 1, 1]
    out = emb(torch.tensor([[0, 5, 50, 7]]))
    assert torch.equal(out[0, 0], torch.zeros(4))  # padding embeds to zero
    assert torch.equal(out[0, 1], out[0, 2]) and not torch.equal(out[0, 1], out[0, 3])


@pytest.mark.parametrize("arch", ["text_cnn", "text_transformer"])
def test_students_classify_token_ids(arch):
    torch.manual_seed(0)
    model = TEXT_MODELS.create(arch, num_classes=3, keep_ids=list(range(200))).eval()
    ids = torch.randint(1, 300, (5, 64))
    assert model(ids).shape == (5, 3) and model(ids.to(torch.int32)).shape == (5, 3)
    params = sum(p.numel() for p in model.parameters())
    assert params < 400_000  # a 200-token vocabulary: the encoder is what is left


def test_the_transformer_ignores_padding():
    torch.manual_seed(0)
    model = TEXT_MODELS.create("text_transformer", num_classes=2).eval()
    ids = torch.randint(1, 1000, (2, 8))
    padded = torch.cat([ids, torch.zeros(2, 24, dtype=torch.long)], dim=1)
    with torch.no_grad():
        assert torch.allclose(model(ids), model(padded), atol=1e-5)


def test_the_teacher_mean_pools_its_encoder_over_real_tokens(tmp_path):
    transformers = pytest.importorskip("transformers")
    from toolkit.models.minilm import SentenceClassifier, load_encoder

    # a small random BERT saved the way the MiniLM folder is (config.json + model.safetensors)
    config = transformers.BertConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(tmp_path / "bert")
    teacher = SentenceClassifier(load_encoder(tmp_path / "bert"), num_classes=2).eval()
    ids = torch.tensor([[101, 7, 8, 102], [101, 9, 102, 0]])
    padded = torch.cat([ids, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    with torch.no_grad():
        emb = teacher.forward_features(ids)
        manual = teacher.encoder(input_ids=ids[:1, :3]).last_hidden_state.mean(1)  # row 2 without padding
        assert torch.allclose(teacher(ids), teacher(padded), atol=1e-5)
        second = teacher.encoder(input_ids=ids[1:, :3]).last_hidden_state.mean(1)
    assert emb.shape == (2, 32) and torch.allclose(emb[1], second[0], atol=1e-5)
    assert not torch.allclose(emb[0], manual[0], atol=1e-3)  # the first row has 4 real tokens, not 3
    with pytest.raises(FileNotFoundError, match="make text-data"):
        load_encoder(tmp_path / "nothing")

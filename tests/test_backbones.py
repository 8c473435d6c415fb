from __future__ import annotations

import random

import pytest
import torch
from PIL import Image

from transferkit.backbones import PACKAGED, create_backbone, lukemelas_to_timm, timm_block_names
from transferkit.backbones._packaged import packaged_weights_file
from transferkit.errors import BackboneError

TINY_ARCHS = ["test_efficientnet", "test_resnet", "test_vit", "test_convnext"]


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_backbone_contract(arch):
    """Every backbone: pooled features of num_features, stages that cover the parameters, a fresh copy."""
    b = create_backbone(f"random:{arch}")
    size = b.pretrained_cfg.get("input_size", (3, 64, 64))[-1]
    x = torch.randn(2, 3, size, size)
    feats = b.eval()(x)
    assert feats.shape == (2, b.num_features)
    stages = b.stages()
    names = {n for n, _ in b.named_parameters()}
    covered = {n for s in stages for n in s}
    assert len(stages) >= 2 and names == covered
    assert b.source_head is not None and b.source_head(feats).shape == (2, 1000)
    fresh = b.fresh()
    assert not torch.equal(next(fresh.parameters()), next(b.parameters()))
    # dense tasks: unpooled features and the channels/stride of each stage
    info = b.feature_info()
    unpooled = b.forward_features(x)
    assert info and unpooled.shape[0] == 2
    if unpooled.dim() == 4:  # a CNN map at the last stage's stride
        assert unpooled.shape[-1] == size // info[-1]["reduction"]
    assert [f["reduction"] for f in info] == sorted(f["reduction"] for f in info)
    modules = dict(b.named_modules())
    assert all(f["module"] in modules for f in info)


def test_unknown_names_are_clear():
    with pytest.raises(BackboneError, match="Did you mean 'timm:'"):
        create_backbone("tim:resnet18")
    with pytest.raises(BackboneError, match="not a timm architecture.*resnet18"):
        create_backbone("random:resnet_18")
    with pytest.raises(BackboneError, match="Unknown packaged backbone 'lite9'.*efficientnet_lite0"):
        create_backbone("packaged:lite9")


def test_timm_offline_error_names_offline_options(monkeypatch):
    import timm

    def no_network(*a, **k):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(timm, "create_model", no_network)
    with pytest.raises(BackboneError) as info:
        create_backbone("timm:resnet18")
    msg = str(info.value)
    assert "offline" in msg and "packaged:efficientnet_lite0" in msg and "file:" in msg


def test_lite_mapping_is_by_name_and_complete():
    """Every timm tensor gets exactly one packaged tensor of the right shape, whatever the key order."""
    import timm

    state = torch.load(packaged_weights_file(PACKAGED["efficientnet_lite0"].module), map_location="cpu",
                       weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    mapped = lukemelas_to_timm(state, timm_block_names(model))
    own = model.state_dict()
    assert set(mapped) == set(own)
    assert all(mapped[k].shape == own[k].shape for k in own)
    items = list(state.items())
    random.Random(0).shuffle(items)
    shuffled = lukemelas_to_timm(dict(items), timm_block_names(model))
    assert all(torch.equal(shuffled[k], mapped[k]) for k in mapped)
    # the depthwise first block and an expanded block land on their own layer names
    assert torch.equal(mapped["blocks.0.0.conv_dw.weight"], state["_blocks.0._depthwise_conv.weight"])
    assert torch.equal(mapped["blocks.1.0.conv_pwl.weight"], state["_blocks.1._project_conv.weight"])
    assert torch.equal(mapped["bn2.running_var"], state["_bn1.running_var"])
    with pytest.raises(KeyError, match="_blocks.0._se_reduce"):
        lukemelas_to_timm({"_blocks.0._se_reduce.weight": torch.zeros(1)}, timm_block_names(model))


@pytest.mark.slow
def test_packaged_lite0_names_imagenet_classes():
    """The converted weights recognise real photos shipped with scikit-image: a cat and an espresso."""
    skdata = pytest.importorskip("skimage.data")
    from transferkit.data import eval_transform, resolve_data_config

    b = create_backbone("packaged:efficientnet_lite0").eval()
    assert b.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
    tf = eval_transform(resolve_data_config(b.pretrained_cfg))
    x = torch.stack([tf(Image.fromarray(skdata.chelsea())), tf(Image.fromarray(skdata.coffee()))])
    with torch.no_grad():
        probs = b.source_head(b(x)).softmax(1)
    top2_cat = probs[0].topk(2).indices.tolist()
    assert 285 in top2_cat and all(281 <= i <= 285 for i in top2_cat)  # Egyptian / tabby / tiger cat
    assert probs[1].argmax().item() == 967  # espresso


def test_file_backbone_loads_and_refuses_bad_files(tmp_path):
    import timm
    from safetensors.torch import save_file

    src = timm.create_model("test_resnet", pretrained=False, num_classes=5)
    save_file(src.state_dict(), str(tmp_path / "w.safetensors"))
    b = create_backbone(f"file:{tmp_path / 'w.safetensors'}", arch="test_resnet")
    assert torch.equal(b.model.state_dict()["conv1.0.weight"] if "conv1.0.weight" in b.model.state_dict()
                       else next(iter(b.model.state_dict().values())), next(iter(src.state_dict().values())))
    assert b.source_head is not None and b.source_head.out_features == 5
    with pytest.raises(BackboneError, match="needs its architecture"):
        create_backbone(f"file:{tmp_path / 'w.safetensors'}")
    with pytest.raises(BackboneError, match="has tensor '.*', which the architecture does not have"):
        create_backbone(f"file:{tmp_path / 'w.safetensors'}", arch="test_efficientnet")
    wrong = dict(src.state_dict())
    key = next(k for k, v in wrong.items() if v.ndim == 4)
    wrong[key] = wrong[key][:, :1].contiguous()
    save_file(wrong, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(BackboneError, match=f"tensor '{key}' has shape"):
        create_backbone(f"file:{tmp_path / 'wrong.safetensors'}", arch="test_resnet")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"w": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(BackboneError, match=r"Refused to load.*\(.*print\) that could run code"):
        create_backbone(f"file:{tmp_path / 'evil.pt'}", arch="test_resnet")
    good = tmp_path / "w.pt"
    torch.save(src.state_dict(), good)
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:1000])
    with pytest.raises(BackboneError, match="damaged"):
        create_backbone(f"file:{tmp_path / 'cut.pt'}", arch="test_resnet")

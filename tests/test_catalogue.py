"""models.txt, user manifests, name lookup and digests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cvstyle.catalogue import PUBLISHED_PREFIX, Catalogue, bundled_path, load_catalogue, parse_catalogue
from cvstyle.errors import ModelError
from cvstyle.hashes import ALGORITHMS, Digest, file_hexdigest, parse_digest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    """An empty store: manifests a user added elsewhere must not change these tests."""
    monkeypatch.setenv("CVSTYLE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"

# The published digests (shared/reference/pretrained-models.md), pinned here so that an
# edit of models.txt cannot quietly change them.
PUBLISHED = {
    "eccv16/composition_vii": "gitsha1:02016695060de80296eb30a32ab49de2705c1b9c",
    "eccv16/la_muse": "gitsha1:4f60e43bea94bd0037415025d3738c8f6ad08cc3",
    "eccv16/starry_night": "sha1:5b5e115253197b84d6c6ece1dafe6c15d7105ca6",
    "eccv16/the_wave": "gitsha1:73af44be6387eca7f67d3022ce9d51fd9bed7de2",
    "instance_norm/candy": "gitsha1:69e37b1f75ff22a634b6aa7cbb257a406229c831",
    "instance_norm/feathers": "sha1:9838007df750d483b5b5e90b92d76e8ada5a31c0",
    "instance_norm/la_muse": "gitsha1:b8176a77167b0ba8c4eaf788632f4406c55e89d0",
    "instance_norm/mosaic": "gitsha1:44aa0a148a1ec97fb5ce42520fa5637c86fc4060",
    "instance_norm/the_scream": "gitsha1:f5e57365e706dda66811c1b95c443de656175220",
    "instance_norm/udnie": "gitsha1:6249ef3f24051536f51319422e646bb378189e66",
}
URL = "http://example.org/m.t7"
DIGEST = "sha256:" + "ab" * 32


def test_bundled_catalogue_is_the_repository_file():
    assert bundled_path() == REPO_ROOT / "models.txt"


def test_the_ten_published_models():
    catalogue = load_catalogue()
    assert {entry.name: str(entry.digest) for entry in catalogue} == PUBLISHED
    for entry in catalogue:
        assert entry.digest.algo in ALGORITHMS
        assert entry.url == f"{PUBLISHED_PREFIX}{entry.family}/{entry.short_name}.t7"
        assert entry.title
        assert entry.source.startswith(str(REPO_ROOT / "models.txt") + ":")
    assert catalogue.lookup("starry_night").title == "The Starry Night, Vincent van Gogh"


def test_short_and_full_names():
    catalogue = load_catalogue()
    assert catalogue.lookup("candy").name == "instance_norm/candy"
    assert catalogue.lookup("the_wave").family == "eccv16"
    assert catalogue.lookup("eccv16/la_muse").short_name == "la_muse"


def test_ambiguous_short_name_lists_the_candidates():
    with pytest.raises(ModelError) as raised:
        load_catalogue().lookup("la_muse")
    assert str(raised.value) == "model name 'la_muse' is ambiguous: use one of eccv16/la_muse, instance_norm/la_muse"


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ModelError, match=r"unknown model 'starry_nite'; did you mean starry_night\?"):
        load_catalogue().lookup("starry_nite")
    with pytest.raises(ModelError, match=r"did you mean eccv16/la_muse or instance_norm/la_muse\?"):
        load_catalogue().lookup("la_mus")
    with pytest.raises(ModelError) as raised:
        load_catalogue().lookup("zzz")
    assert str(raised.value) == "unknown model 'zzz' (`cvstyle models` lists them)"


def test_select_defaults_to_all_and_drops_repeats():
    catalogue = load_catalogue()
    assert len(catalogue.select([])) == 10
    assert [e.name for e in catalogue.select(["candy", "instance_norm/candy", "udnie"])] == [
        "instance_norm/candy",
        "instance_norm/udnie",
    ]


def test_comments_blank_lines_and_titles():
    text = (
        "# heading\n\n"
        f"mine/portrait  {URL}  {DIGEST}  Composition#7, Me   # my first model\n"
        f"mine/bare {URL} {DIGEST}\n"
    )
    portrait, bare = parse_catalogue(text, "my.txt")
    assert (portrait.name, portrait.url, portrait.title, portrait.source) == (
        "mine/portrait", URL, "Composition#7, Me", "my.txt:3"
    )
    assert portrait.digest == Digest("sha256", "ab" * 32)
    assert bare.title == ""


@pytest.mark.parametrize(
    "line, message",
    [
        (f"mine/x {URL}", "my.txt:2: expected NAME URL DIGEST [input=PRESET] [size=BYTES] [TITLE...], got 'mine/x http://example.org/m.t7'"),
        (f"portrait {URL} {DIGEST}", "my.txt:2: model name 'portrait' is not family/name"),
        (f"mine/../x {URL} {DIGEST}", "my.txt:2: model name 'mine/../x' is not family/name"),
        (f"mine/x.t7 {URL} {DIGEST}", "my.txt:2: model name 'mine/x.t7' is not family/name"),
        (f"mine/x.onnx {URL} {DIGEST}", "my.txt:2: model name 'mine/x.onnx' is not family/name"),
        (
            f"mine/x {URL} {DIGEST} input=bgr255 Mine",
            "my.txt:2: unknown input format 'bgr255': choose one of vgg, rgb255, rgb01",
        ),
        (f"mine/x {URL} {DIGEST} input= Mine", "my.txt:2: unknown input format '': choose one of"),
        (f"mine/x {URL} {DIGEST} inptu=rgb255 Mine", "my.txt:2: unknown setting 'inptu=': choose one of input="),
        (f"mine/x {URL} {DIGEST} input=rgb255 input=vgg", "my.txt:2: input= is given twice"),
        (f"mine/x ftp://example.org/m.t7 {DIGEST}", "my.txt:2: 'ftp://example.org/m.t7' is not an http, https or file URL"),
        (f"mine/x {URL} md5:{'0' * 32}", "my.txt:2: unknown digest algorithm 'md5'"),
        (f"mine/x {URL} sha1:1234", "my.txt:2: a sha1 digest is 40 hex digits, not '1234'"),
        (f"mine/x {URL} {'0' * 40}", "my.txt:2: digest '" + "0" * 40 + "' is not of the form ALGO:HEX"),
        (f"mine/y {URL} {DIGEST}\nmine/y {URL} {DIGEST}", "my.txt:3: mine/y is listed twice (first at my.txt:2)"),
    ],
)
def test_malformed_lines_name_file_and_line(line, message):
    with pytest.raises(ModelError) as raised:
        parse_catalogue(f"# mine\n{line}\n", "my.txt")
    assert str(raised.value).startswith(message)


def test_manifest_adds_and_overrides(tmp_path):
    manifest = tmp_path / "mine.txt"
    manifest.write_text(f"instance_norm/candy {URL} {DIGEST} My candy\nmine/portrait {URL} {DIGEST}\n")
    catalogue = load_catalogue(manifest)
    assert len(catalogue) == 11
    assert catalogue.lookup("candy").title == "My candy"
    assert catalogue.lookup("portrait").source == f"{manifest}:2"
    assert "eccv16/the_wave" in catalogue


def test_missing_manifest(tmp_path):
    with pytest.raises(ModelError, match=f"model catalogue {tmp_path / 'nope.txt'} does not exist"):
        load_catalogue(tmp_path / "nope.txt")


def test_later_entries_replace_earlier_ones():
    first, second = (parse_catalogue(f"a/b {URL} {DIGEST} {title}", "x")[0] for title in ("one", "two"))
    assert Catalogue([first, second]).lookup("b").title == "two"


def test_gitsha1_is_the_git_blob_id(tmp_path):
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello\n")
    # `git hash-object` of "hello\n", a well-known value.
    assert file_hexdigest(path, "gitsha1") == "ce013625030ba8dba906f756967f9e9ca394464a"
    data = bytes(range(256)) * 5000  # spans several hashing chunks
    path.write_bytes(data)
    assert file_hexdigest(path, "gitsha1") == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert file_hexdigest(path, "sha1") == hashlib.sha1(data).hexdigest()
    assert Digest("sha256", "0" * 64).of_file(path) == Digest("sha256", hashlib.sha256(data).hexdigest())


def test_parse_digest_normalises_case():
    assert parse_digest("SHA1:" + "AB" * 20) == Digest("sha1", "ab" * 20)
    assert str(parse_digest("gitsha1:" + "0" * 40)) == "gitsha1:" + "0" * 40


def test_onnx_urls_and_input_presets():
    text = (
        f"mine/torch  {URL}  {DIGEST}  Torch model\n"
        f"mine/net  https://example.org/dl/Net.ONNX?x=1  {DIGEST}  input=rgb255  My  PyTorch net\n"
        f"mine/unit https://example.org/unit.onnx {DIGEST} input=rgb01\n"
        f"mine/plain https://example.org/plain.onnx {DIGEST} E = mc2, input=rgb255\n"
    )
    torch, net, unit, plain = parse_catalogue(text, "my.txt")
    assert (torch.suffix, torch.input_format, torch.title) == (".t7", "vgg", "Torch model")
    assert (net.suffix, net.input_format, net.title) == (".onnx", "rgb255", "My  PyTorch net")
    assert (unit.suffix, unit.input_format, unit.title) == (".onnx", "rgb01", "")
    # Only KEY=VALUE words directly after DIGEST are settings; the title is kept as written.
    assert (plain.suffix, plain.input_format, plain.title) == (".onnx", "vgg", "E = mc2, input=rgb255")


def test_size_setting():
    text = f"mine/a {URL} {DIGEST} size=6728452 input=vgg Sized\nmine/b {URL} {DIGEST} Unsized\n"
    sized, unsized = parse_catalogue(text, "my.txt")
    assert (sized.size, sized.input_format, sized.title) == (6728452, "vgg", "Sized")
    assert unsized.size is None
    for bad in ("size=abc", "size=0", "size=-5", "size=1e6"):
        with pytest.raises(ModelError, match=r"my.txt:1: size= is a file's size in bytes \(a positive whole number\)"):
            parse_catalogue(f"mine/a {URL} {DIGEST} {bad} T\n", "my.txt")


def test_a_huge_bad_line_is_quoted_short():
    with pytest.raises(ModelError) as raised:
        parse_catalogue("mine/x " + "\x00\x01binary" * 100_000 + "\n", "my.txt")
    assert len(str(raised.value)) < 300 and "\x00" not in str(raised.value)

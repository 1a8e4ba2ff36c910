"""The bundled social media list, the service index, and AdGuard's blocked services imported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from appliance.config.errors import ConfigError
from appliance.config.loader import Config, load
from appliance.lists.names import normalise
from appliance.lists.services import BUNDLED, ServiceIndex, bundled_text
from tests.conftest import EXAMPLE

POLICY_SERVICES = (
    "facebook",
    "instagram",
    "threads",
    "whatsapp",
    "x",
    "tiktok",
    "snapchat",
    "youtube",
    "linkedin",
    "flickr",
    "pinterest",
    "reddit",
    "tumblr",
    "discord",
    "twitch",
    "bereal",
    "bluesky",
    "mastodon",
    "blogger",
    "wordpress-com",
    "medium",
    "substack",
)
SHARED_INFRASTRUCTURE = (
    "akamaihd.net",
    "akamaized.net",
    "amazonaws.com",
    "cloudfront.net",
    "googleapis.com",
    "googleusercontent.com",
    "google.com",
    "gstatic.com",
    "ggpht.com",
    "fastly.net",
)


def bundled() -> list[dict[str, Any]]:
    services: list[dict[str, Any]] = yaml.safe_load(bundled_text("social-media"))["services"]
    return services


def all_domains() -> list[str]:
    return [domain for service in bundled() for domain in service["domains"]]


# -- the bundled list --------------------------------------------------------------------------


def test_social_media_is_bundled() -> None:
    assert "social-media" in BUNDLED


@pytest.mark.parametrize("service_id", POLICY_SERVICES)
def test_policy_service_is_listed(service_id: str) -> None:
    assert service_id in {s["id"] for s in bundled()}


def test_service_ids_are_unique() -> None:
    ids = [s["id"] for s in bundled()]
    assert len(ids) == len(set(ids))


def test_no_domain_is_listed_twice() -> None:
    domains = all_domains()
    repeated = sorted({d for d in domains if domains.count(d) > 1})
    assert repeated == []


def test_no_domain_is_under_another_listed_domain() -> None:
    domains = set(all_domains())
    nested = sorted(
        d for d in domains for parent in domains if d != parent and d.endswith(f".{parent}")
    )
    assert nested == []


def test_categories() -> None:
    assert {s["category"] for s in bundled()} <= {"social", "video", "messaging", "blogs"}


def test_every_service_has_a_name_and_domains() -> None:
    for service in bundled():
        assert set(service) == {"id", "name", "category", "domains"}, service["id"]
        assert service["name"].strip(), service["id"]
        assert service["domains"], service["id"]


@pytest.mark.parametrize("domain", all_domains())
def test_domains_are_in_canonical_form(domain: str) -> None:
    assert normalise(domain) == domain


@pytest.mark.parametrize("domain", SHARED_INFRASTRUCTURE)
def test_shared_infrastructure_is_not_listed(domain: str) -> None:
    assert domain not in all_domains()


# -- the index, via the example school ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "service"),
    [
        ("WWW.YouTube.com.", "youtube"),
        ("youtube.com", "youtube"),
        ("youtu.be", "youtube"),
        ("rr3---sn-abc.googlevideo.com", "youtube"),
        ("m.facebook.com", "facebook"),
        ("connect.facebook.net", "facebook"),
        ("scontent.fbcdn.net", "facebook"),
        ("m.me", "facebook"),
        ("x.com", "x"),
        ("t.co", "x"),
        ("pbs.twimg.com", "x"),
        ("www.instagram.com", "instagram"),
        ("www.threads.net", "threads"),
        ("web.whatsapp.com", "whatsapp"),
        ("i0.wp.com", "wordpress-com"),
        ("example.blogspot.com", "blogger"),
        ("mastodon.social", "mastodon"),
        ("bsky.app", "bluesky"),
        ("vk.com", "vk"),  # the school's own lists.yaml
        ("wordpress.org", None),
        ("notinstagram.com", None),
        ("instagram.com.evil.test", None),
        ("google.com", None),
        ("example.org", None),
        ("not a name", None),
        ("", None),
    ],
)
def test_lookup(example: Config, name: str, service: str | None) -> None:
    found = example.facts.services.lookup(name)
    assert (found.id if found else None) == service


def test_lookup_is_match_after_normalising(example: Config) -> None:
    index = example.facts.services
    assert index.match("WWW.YouTube.com.") is None  # match() wants a normalised name
    assert index.lookup("WWW.YouTube.com.") == index.match("www.youtube.com")


def test_index_services_and_categories(example: Config) -> None:
    index: ServiceIndex = example.facts.services
    for service_id in POLICY_SERVICES:
        service = index.services[service_id]
        assert service.id == service_id
        assert service.category in index.categories
    assert index.services["youtube"].category == "video"
    assert index.services["whatsapp"].category == "messaging"
    assert index.services["medium"].category == "blogs"
    assert index.services["vk"].category == "social"


def test_bundled_report(example: Config) -> None:
    summaries = [r.summary() for r in example.reports]
    taken = len(all_domains())
    assert f"bundled:social-media: {taken} rules taken, 0 skipped" in summaries


# -- AdGuard's blocked-services JSON, through the config loader --------------------------------


def school_with_adguard(
    tmp_path: Path,
    json_file: Path,
    ids: list[str] | None,
    *,
    category: str = "social",
    bundled_list: bool = True,
) -> Path:
    directory = tmp_path / "school"
    shutil.copytree(EXAMPLE, directory)
    shutil.copy(json_file, directory / "adguard-blocked-services.json")
    lists_file = directory / "lists.yaml"
    doc = yaml.safe_load(lists_file.read_text("utf-8"))
    entry: dict[str, Any] = {
        "adguard_services": "adguard-blocked-services.json",
        "category": category,
    }
    if ids is not None:
        entry["ids"] = ids
    include = [i for i in doc["include"] if bundled_list or "bundled" not in i]
    doc["include"] = [*include, entry]
    lists_file.write_text(yaml.safe_dump(doc, sort_keys=False), "utf-8")
    return directory


ADGUARD_IDS = ["4chan", "9gag", "imgur", "ebay"]


@pytest.fixture
def with_adguard(tmp_path: Path, adguard_services: Path) -> Config:
    return load(school_with_adguard(tmp_path, adguard_services, ADGUARD_IDS))


@pytest.mark.parametrize(
    ("name", "service"),
    [
        ("boards.4chan.org", "4chan"),
        ("i.4cdn.org", "4chan"),
        ("9gag.com", "9gag"),
        ("i.imgur.com", "imgur"),
        ("www.ebay.co.uk", "ebay"),
        ("ebay-x.s3-us-west-1.amazonaws.com", "ebay"),
        ("other.s3-us-west-1.amazonaws.com", None),
        ("www.instagram.com", "instagram"),  # the bundled list is still there
        ("vk.com", "vk"),
        ("epicgames.com", None),  # not among the ids
        ("netflix.com", None),
    ],
)
def test_adguard_ids_imported(with_adguard: Config, name: str, service: str | None) -> None:
    found = with_adguard.facts.services.lookup(name)
    assert (found.id if found else None) == service


def test_adguard_services_keep_id_and_name(with_adguard: Config) -> None:
    services = with_adguard.facts.services.services
    assert services["4chan"].name == "4chan"
    assert services["4chan"].category == "social"
    assert services["9gag"].name == "9GAG"
    assert services["ebay"].name == "eBay"
    assert "netflix" not in services
    assert with_adguard.facts.services.lookup("boards.4chan.org") == services["4chan"]


def test_adguard_report(with_adguard: Config, adguard_services: Path) -> None:
    data = json.loads(adguard_services.read_text("utf-8"))
    rules = sum(len(s["rules"]) for s in data["services"] if s["id"] in ADGUARD_IDS)
    [report] = [r for r in with_adguard.reports if r.source == "adguard-blocked-services.json"]
    assert report.summary() == f"adguard-blocked-services.json: {rules} rules taken, 0 skipped"


def test_adguard_service_merges_with_the_schools_own(
    tmp_path: Path, adguard_services: Path
) -> None:
    # vk is in the school's own lists.yaml (category social) and in AdGuard's list: one service
    # with both sets of domains.
    config = load(school_with_adguard(tmp_path, adguard_services, ["4chan", "vk"]))
    index = config.facts.services
    assert index.services["vk"].category == "social"
    for name in ("vk.com", "vkontakte.ru", "vk.me", "sun1.userapi.com", "vkuservideo.net"):
        found = index.lookup(name)
        assert found is not None, name
        assert found.id == "vk", name


def test_adguard_service_in_another_category_is_an_error(
    tmp_path: Path, adguard_services: Path
) -> None:
    # youtube is bundled in category video; importing AdGuard's youtube as social conflicts.
    directory = school_with_adguard(tmp_path, adguard_services, ["youtube"])
    with pytest.raises(ConfigError) as raised:
        load(directory)
    messages = [str(i) for i in raised.value.issues]
    assert any("service youtube is already in category video" in m for m in messages), messages


def test_adguard_unknown_id_is_an_error(tmp_path: Path, adguard_services: Path) -> None:
    directory = school_with_adguard(tmp_path, adguard_services, ["4chan", "no-such-service"])
    with pytest.raises(ConfigError) as raised:
        load(directory)
    messages = [str(i) for i in raised.value.issues]
    assert any('has no service "no-such-service"' in m for m in messages), messages


def test_adguard_missing_file_is_an_error(tmp_path: Path, adguard_services: Path) -> None:
    directory = school_with_adguard(tmp_path, adguard_services, ["4chan"])
    (directory / "adguard-blocked-services.json").unlink()
    with pytest.raises(ConfigError) as raised:
        load(directory)
    assert any("no such file" in str(i) for i in raised.value.issues)


def test_adguard_all_services(tmp_path: Path, adguard_services: Path) -> None:
    # All 139, without the bundled list (whose youtube, whatsapp, discord and twitch are in other
    # categories than "social"). AdGuard ids such as epic_games have underscores; importing
    # every service must still work.
    directory = school_with_adguard(tmp_path, adguard_services, None, bundled_list=False)
    config = load(directory)
    index = config.facts.services
    [report] = [r for r in config.reports if r.source == "adguard-blocked-services.json"]
    assert report.taken == 2394
    assert [s.text for s in report.skipped] == ["||amazonaws.com^$dnstype=~CNAME"]
    # 139 AdGuard services (vk merged with the school's own) and the illegal-content feed.
    assert len(index.services) == 139 + 1
    for name, service in [
        ("boards.4chan.org", "4chan"),
        ("www.youtube.com", "youtube"),
        ("vk.com", "vk"),
    ]:
        found = index.lookup(name)
        assert found is not None, name
        assert found.id == service, name
    epic = index.lookup("www.epicgames.com")
    assert epic is not None
    assert epic.name == "Epic Games"
    assert epic.id in {"epic_games", "epic-games"}


def test_adguard_all_services_with_the_bundled_list_conflicts(
    tmp_path: Path, adguard_services: Path
) -> None:
    directory = school_with_adguard(tmp_path, adguard_services, None)
    with pytest.raises(ConfigError) as raised:
        load(directory)
    messages = "\n".join(str(i) for i in raised.value.issues)
    for service, category in [
        ("youtube", "video"),
        ("whatsapp", "messaging"),
        ("discord", "messaging"),
        ("twitch", "video"),
    ]:
        assert f"service {service} is already in category {category}" in messages


def test_denyallow_in_one_list_does_not_unlist_another(school_dir: Path) -> None:
    # $denyallow narrows the rule it is on; a feed's ||bad.example^$denyallow=youtube.com must
    # not take YouTube out of the bundled list.
    (school_dir / "illegal-content.txt").write_text(
        "||bad.example^$denyallow=youtube.com\n", "utf-8"
    )
    index = load(school_dir).facts.services
    bad = index.lookup("www.bad.example")
    assert bad is not None
    assert bad.id == "illegal-content"
    youtube = index.lookup("www.youtube.com")
    assert youtube is not None
    assert youtube.id == "youtube"

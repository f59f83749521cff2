"""Schemathesis hooks of the API contract stage (scripts/api-contract.sh).

The OpenAPI document states every rule JSON Schema can say. A few rules of
GPS it cannot: they compare items of a list by more than equality, add two
numbers, depend on what is stored, or concern the bytes of a file. For those,
the positive (schema-valid) cases the tool generates are brought within the
rule here, so that "valid data is accepted" tests data a client following
the documentation would send. The rules themselves are documented in the
document's descriptions and tested in tests/it. Negative cases are left as
generated: they must be rejected whatever these hooks would do.

  - Idempotency-Key: a key is the client's name for one command; reused with
    another request it is refused (422), by design. Generated keys are short
    and repeat across operations, so each positive case gets a fresh one.
  - Ids given on create (`product_id`, `shooting_id`, …) and SKUs are new
    ones: a used one is a conflict (409), which says nothing about the
    request, and generated ones repeat ("0"), so creates would mostly
    collide and the stateful phase would have nothing to follow.
  - A style's guidelines are one rule each whatever their case, and a do and
    a don't with the same words contradict; its reference images are
    distinct files (by hash). A look's guidelines are each listed once after
    trimming. Later repeats are dropped.
  - A revision region stays inside the image: x + width and y + height at
    most 1.
  - A shooting has default shot types: a look without its own cannot be
    launched in a shooting without them (422, a rule that depends on the
    looks the shooting will have).
  - A shooting's quality gate (minimum long edge) must not exceed the
    shooting's output long edge, which is stored state: at most 256 px,
    the smallest output, keeps every shooting's rule satisfiable.
  - In the stateful phase, three reads in four go without `min_sequence`,
    and lists without filters or cursor, so that they list items for the
    links to follow.
  - An event filter names event types or aggregate types, not event types
    of aggregates it excludes.
  - A usage period runs forward and spans less than 36 months (`to`
    defaults to this month): a `from` that breaks it is moved to `to`.
  - Image uploads carry a real (small, generated) PNG; catalog imports a
    real CSV of one product row.
  - A look the run created is addressed under its own shooting, and a launch
    addresses a shooting that has looks. Half the changes of a look whose
    shooting cannot change now (launched, completed, archived) go to a look
    of a draft shooting (GPS_CONTRACT_DRAFTS and what the run saw).
  - Seven export requests in eight (and every one naming a prediction the
    run saw not approved) name the predictions approved now (the stage
    approved the seeded shooting's, GPS_CONTRACT_APPROVED; the run's reviews are followed), with a built-in
    preset and no webhook: only approved predictions can be exported, and a
    webhook must be public.
  - Image ids given with an upload are new ones: an id names one image.
  - Half the video requests name a prediction approved now.
  - Half the downloads name the export the stage seeded
    (GPS_CONTRACT_EXPORT), whose ZIP exists by then.
  - Half the password choices use a set-password link gps up mailed to a
    member the run added (GPS_CONTRACT_OUTBOX), each link once.
  - Half the sign-ins are the second account's, with its password
    (GPS_CONTRACT_MEMBER_PASSWORD): the run's own credentials stay in force.
  - Half the additions of members name the second account the stage
    creates (GPS_CONTRACT_MEMBER_EMAIL), when there is one.
"""

import datetime
import json
import os
import re
import struct
import uuid
import zlib

import schemathesis


def _operation_id(case):
    raw = getattr(case.operation.definition, "raw", None) or {}
    return raw.get("operationId", "")


def _is_positive(case):
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


def _png(width, height):
    """A valid RGB PNG of random pixels: a picture of its own, so that its
    perceptual hash differs from every other upload's (one-colour pictures
    all look alike, and a subject refuses the same picture twice)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + os.urandom(3 * width) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _dedupe(items, key):
    seen, kept = set(), []
    for item in items:
        marker = key(item)
        if marker in seen:
            continue
        seen.add(marker)
        kept.append(item)
    return kept


def _text_key(value):
    return value.strip() if isinstance(value, str) else repr(value)


def _style_definition(definition):
    if not isinstance(definition, dict):
        return
    guidelines = definition.get("guidelines")
    if isinstance(guidelines, list):
        # The same words (any case) once, whether a do or a don't.
        definition["guidelines"] = _dedupe(
            guidelines,
            lambda g: _text_key(g.get("text")).lower() if isinstance(g, dict) else repr(g),
        )
    images = definition.get("reference_images")
    if isinstance(images, list):
        definition["reference_images"] = _dedupe(
            images, lambda i: str(i.get("hash", "")).lower() if isinstance(i, dict) else repr(i)
        )


def _look_guidelines(guidelines):
    if not isinstance(guidelines, dict):
        return
    for name in ("dos", "donts"):
        if isinstance(guidelines.get(name), list):
            guidelines[name] = _dedupe(guidelines[name], _text_key)


def _inside_the_image(region):
    if not isinstance(region, dict):
        return
    for start, size in (("x", "width"), ("y", "height")):
        origin, extent = region.get(start), region.get(size)
        if isinstance(origin, (int, float)) and isinstance(extent, (int, float)) and origin + extent > 1:
            region[start] = 1 - extent


def _month(value):
    year, month = value.strip().split("-")
    return int(year) * 12 + int(month) - 1


def _usage_period(query):
    start = query.get("from")
    if not isinstance(start, str):
        return
    end = query.get("to")
    if isinstance(end, str):
        last = _month(end)
    else:
        now = datetime.datetime.now(datetime.timezone.utc)
        last = now.year * 12 + now.month - 1
        end = f"{now.year:04d}-{now.month:02d}"
    if not 0 <= last - _month(start) < 36:
        query["from"] = end


# The shooting of each look the run created (and the stage seeded,
# GPS_CONTRACT_LOOKS="look=shooting,…"): a look is addressed under its own
# shooting (under another it is refused, 422), and a shooting without looks
# cannot be launched (422).
_SHOOTING_OF_LOOK = dict(
    pair.split("=", 1) for pair in os.environ.get("GPS_CONTRACT_LOOKS", "").split(",") if "=" in pair
)


def _shootings_with_looks():
    return set(_SHOOTING_OF_LOOK.values())


# Shootings whose looks can change now (drafts: created or reopened, not
# launched, completed or archived since); the stage's draft is one.
_DRAFTS = set(os.environ.get("GPS_CONTRACT_DRAFTS", "").split(",")) - {""}
_DRAFT_AFTER = {
    "create_shooting": True,
    "reopen_shooting": True,
    "launch_shooting": False,
    "complete_shooting": False,
    "archive_shooting": False,
    "cancel_shooting_launch": False,
}
_LOOK_CHANGES = (
    "rename_look",
    "remove_look",
    "change_look_products",
    "change_look_subject",
    "change_look_style",
    "set_look_guidelines",
    "set_look_shot_types",
)


# The review state of each prediction the run has seen (the stage approved
# all of the seeded shooting's, GPS_CONTRACT_APPROVED, comma-separated): only approved predictions can be exported, and
# a review in the run may have taken the approval back.
_REVIEW_STATE = {p: "approved" for p in os.environ.get("GPS_CONTRACT_APPROVED", "").split(",") if p}
_REVIEWED_AS = {
    "approve_prediction": "approved",
    "reject_prediction": "rejected",
    "reset_review": "pending",
    "request_revision": "revision_requested",
}


def _approved():
    return sorted(prediction for prediction, state in _REVIEW_STATE.items() if state == "approved")


# What the run learned, kept across the stage's invocations (each phase of
# each run is a process of its own) in GPS_CONTRACT_HOOK_STATE.
_STATE_FILE = os.environ.get("GPS_CONTRACT_HOOK_STATE")


_USED_TOKENS = set()


def _load():
    if not _STATE_FILE or not os.path.exists(_STATE_FILE):
        return
    with open(_STATE_FILE, encoding="utf-8") as file:
        state = json.load(file)
    _SHOOTING_OF_LOOK.clear()
    _SHOOTING_OF_LOOK.update(state.get("shooting_of_look", {}))
    _REVIEW_STATE.update(state.get("review_state", {}))
    _USED_TOKENS.update(state.get("used_tokens", []))
    _DRAFTS.clear()
    _DRAFTS.update(state.get("drafts", sorted(_DRAFTS)))


def _save():
    if _STATE_FILE:
        with open(_STATE_FILE, "w", encoding="utf-8") as file:
            json.dump(
                {
                    "shooting_of_look": _SHOOTING_OF_LOOK,
                    "review_state": _REVIEW_STATE,
                    "used_tokens": sorted(_USED_TOKENS),
                    "drafts": sorted(_DRAFTS),
                },
                file,
            )


_load()


@schemathesis.hook
def after_call(context, case, response):
    before = (dict(_SHOOTING_OF_LOOK), dict(_REVIEW_STATE), set(_DRAFTS))
    _learn(case, response)
    if before != (_SHOOTING_OF_LOOK, _REVIEW_STATE, _DRAFTS):
        _save()


def _learn(case, response):
    if _operation_id(case) in _DRAFT_AFTER and response.status_code in (200, 201):
        shooting = (case.path_parameters or {}).get("shooting")
        if _operation_id(case) == "create_shooting":
            try:
                shooting = response.json().get("id")
            except Exception:  # not JSON: nothing to learn
                return
        if isinstance(shooting, str):
            if _DRAFT_AFTER[_operation_id(case)]:
                _DRAFTS.add(shooting)
            else:
                _DRAFTS.discard(shooting)
    elif _operation_id(case) == "create_look" and response.status_code in (200, 201):
        try:
            look = response.json().get("id")
        except Exception:  # not JSON: nothing to learn
            return
        shooting = (case.path_parameters or {}).get("shooting")
        if isinstance(look, str) and isinstance(shooting, str):
            _SHOOTING_OF_LOOK[look] = shooting
    elif _operation_id(case) == "remove_look" and response.status_code == 200:
        _SHOOTING_OF_LOOK.pop((case.path_parameters or {}).get("look"), None)
    elif _operation_id(case) in _REVIEWED_AS and response.status_code == 200:
        prediction = (case.path_parameters or {}).get("prediction")
        if isinstance(prediction, str):
            _REVIEW_STATE[prediction] = _REVIEWED_AS[_operation_id(case)]
    elif _operation_id(case) in ("list_predictions", "get_prediction") and response.status_code == 200:
        try:
            answer = response.json()
        except Exception:  # not JSON: nothing to learn
            return
        items = answer.get("items", []) if isinstance(answer, dict) and "items" in answer else [answer]
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("prediction_id"), str):
                _REVIEW_STATE[item["prediction_id"]] = item.get("review_state")


def _unused_password_token():
    """A set-password token from the newest mail of gps up's outbox
    (GPS_CONTRACT_OUTBOX) not handed out before, or None."""
    outbox = os.environ.get("GPS_CONTRACT_OUTBOX")
    if not outbox or not os.path.isdir(outbox):
        return None
    mails = sorted(
        (entry for entry in os.scandir(outbox) if entry.name.endswith(".eml")),
        key=lambda entry: entry.stat().st_mtime,
        reverse=True,
    )
    for mail in mails:
        with open(mail.path, encoding="utf-8", errors="replace") as file:
            found = re.search(r"set-password\?token=([A-Za-z0-9_\-]+)", file.read())
        if found and found.group(1) not in _USED_TOKENS:
            _USED_TOKENS.add(found.group(1))
            _save()
            return found.group(1)
    return None


@schemathesis.hook
def map_case(context, case):
    if not _is_positive(case):
        return case
    if case.headers:
        for name in list(case.headers):
            if name.lower() == "idempotency-key":
                case.headers[name] = uuid.uuid4().hex
    body = case.body if isinstance(case.body, dict) else None
    operation = _operation_id(case)
    path = case.path_parameters or {}
    # Half the changes of a look that cannot change now (its shooting is
    # launched, completed or archived) go to a look of a draft instead.
    if operation in _LOOK_CHANGES and _SHOOTING_OF_LOOK.get(path.get("look")) not in _DRAFTS:
        changeable = sorted(look for look, shooting in _SHOOTING_OF_LOOK.items() if shooting in _DRAFTS)
        if changeable and os.urandom(1)[0] < 128:
            path["look"] = changeable[os.urandom(1)[0] % len(changeable)]
    if path.get("look") in _SHOOTING_OF_LOOK and "shooting" in path:
        path["shooting"] = _SHOOTING_OF_LOOK[path["look"]]
    elif operation == "launch_shooting" and path.get("shooting") not in _shootings_with_looks():
        launchable = sorted(_shootings_with_looks())
        # None left (the run removed them): a shooting that is not there (404).
        path["shooting"] = (
            launchable[os.urandom(1)[0] % len(launchable)] if launchable else f"ct{uuid.uuid4().hex[:20]}"
        )
    # Half the video requests name a prediction approved now (only those are
    # animated).
    if operation == "request_video" and _approved() and os.urandom(1)[0] < 128:
        path["prediction"] = _approved()[os.urandom(1)[0] % len(_approved())]
    # Half the downloads name the export the stage seeded, whose ZIP is made
    # by now (the run's own exports are usually still in progress: 409).
    if operation == "download_export" and os.environ.get("GPS_CONTRACT_EXPORT") and os.urandom(1)[0] < 128:
        path["export"] = os.environ["GPS_CONTRACT_EXPORT"]
    if operation == "get_usage" and isinstance(case.query, dict):
        _usage_period(case.query)
    # Event types outside the aggregate filter could match nothing (400).
    if operation == "list_events" and isinstance(case.query, dict) and case.query.get("aggregate"):
        case.query.pop("type", None)
    # Following a list to its items needs items: in the stateful phase most
    # lists are read unfiltered (a generated filter or cursor matches nothing).
    # Reads wait for a generated `min_sequence` (or are refused, 409, when the
    # log has not reached it); in the stateful phase three in four go without.
    if case.method == "GET" and case.meta.phase.name.value == "stateful" and os.urandom(1)[0] < 192:
        if isinstance(case.query, dict):
            for name in list(case.query):
                if operation.startswith("list_") or name in ("min_sequence", "wait_ms"):
                    del case.query[name]
        if case.headers:
            for name in list(case.headers):
                if name.lower() == "gps-min-sequence":
                    del case.headers[name]
    if body is None:
        return case
    if operation.startswith(("create_", "register_", "request_export", "comment_on")):
        for name, value in list(body.items()):
            if name.endswith("_id") and isinstance(value, str):
                body[name] = f"ct{uuid.uuid4().hex[:20]}"
        if operation == "create_product" and isinstance(body.get("sku"), str):
            body["sku"] = f"CT-{uuid.uuid4().hex[:16].upper()}"
    if operation in ("create_style", "revise_style"):
        _style_definition(body.get("definition"))
    elif operation in ("create_look", "set_look_guidelines"):
        _look_guidelines(body.get("guidelines"))
    elif operation == "request_revision" and isinstance(body.get("regions"), list):
        for region in body["regions"]:
            _inside_the_image(region)
    elif operation in ("create_shooting", "update_shooting_defaults"):
        defaults = body.get("defaults")
        if isinstance(defaults, dict) and defaults.get("shot_types") == []:
            defaults["shot_types"] = ["front"]
    elif operation == "set_shooting_rules":
        gates = body.get("rules", {}).get("quality_gates") if isinstance(body.get("rules"), dict) else None
        minimum = gates.get("min_long_edge_px") if isinstance(gates, dict) else None
        if isinstance(minimum, (int, float)) and not isinstance(minimum, bool):
            gates["min_long_edge_px"] = min(int(minimum), 256)
    elif operation in ("upload_product_image", "upload_subject_image", "upload_style_reference"):
        body["file"] = _png(32, 32)
        # An image id names one image of its subject or product: a new one.
        if isinstance(body.get("image_id"), str):
            body["image_id"] = f"ct{uuid.uuid4().hex[:20]}"
    elif operation == "start_import":
        sku = f"CT-{uuid.uuid4().hex[:12].upper()}"
        body["catalog"] = f"sku,name,category\n{sku},Contract test {sku},tops\n".encode()
        body["format"] = "csv"
        body.pop("images", None)
    elif operation == "request_export":
        approved = _approved()
        named = body.get("predictions") if isinstance(body.get("predictions"), list) else []
        known_unapproved = any(_REVIEW_STATE.get(p, "approved") != "approved" for p in named)
        if approved and (known_unapproved or os.urandom(1)[0] < 224):
            # Half the exports (and every one naming a prediction that is not
            # approved now) name the approved predictions, in a preset the
            # brand has and to a destination that needs no network.
            body["predictions"] = approved[:1000]
            body["channel"] = "web-pdp"
            if not isinstance(body.get("destination"), dict) or body["destination"].get("kind") == "webhook":
                body["destination"] = {"kind": "zip_download"}
        elif known_unapproved:
            body["predictions"] = [f"ct{uuid.uuid4().hex[:20]}"]
    elif operation == "sign_in" and os.environ.get("GPS_CONTRACT_MEMBER_PASSWORD") and os.urandom(1)[0] < 128:
        # Half the sign-ins are the second account's, with its password (the
        # run's own credentials, a key or the owner's cookie, are unchanged).
        body["email"] = os.environ["GPS_CONTRACT_MEMBER_EMAIL"]
        body["password"] = os.environ["GPS_CONTRACT_MEMBER_PASSWORD"]
    elif operation == "set_password" and os.urandom(1)[0] < 128:
        # Half the password choices use a link the run's own additions of
        # members mailed (gps up's outbox), each link once.
        token = _unused_password_token()
        if token:
            body["token"] = token
    elif operation == "add_member" and os.environ.get("GPS_CONTRACT_MEMBER_EMAIL") and os.urandom(1)[0] < 128:
        # Half the additions name the second account; the others a generated
        # address, for which gps up makes a person and mails a password link.
        body["email"] = os.environ["GPS_CONTRACT_MEMBER_EMAIL"]
    return case

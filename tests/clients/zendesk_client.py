"""Drives the Zendesk dialect of a running server with the real Zendesk client library (zenpy).

Usage: zendesk_client.py BASE_URL TENANT SECRET
   (or the environment variables BULK_URL, BULK_TENANT, BULK_SECRET)

zenpy builds its URLs as {scheme}://{subdomain}.{domain}/api/v2/... and insists on a subdomain, so
a server on 127.0.0.1:PORT is reached with subdomain "127" and domain "0.0.1:PORT" (or, for a host
name without a dot, with ZENPY_FORCE_NETLOC), and plain HTTP with ZENPY_FORCE_SCHEME. Both are
set here, before zenpy builds a URL. The credential is sent as zenpy sends it:
Basic {email}/token:{secret}.

Prints every check it makes; exits non-zero with a message on the first failed expectation.
"""

import os
import sys
import time
import uuid
from urllib.parse import urlsplit

from zenpy import Zenpy
from zenpy.lib.api_objects import User
from zenpy.lib.exception import APIException

RESULT_STATUSES = {"Created", "Updated", "Deleted", "Failed"}
JOB_STATUSES = {"queued", "working", "completed", "failed", "killed"}


class Failure(Exception):
    pass


def check(condition, message, *details):
    if not condition:
        raise Failure(" ".join([message, *(repr(d) for d in details)]))
    print("ok   " + message)


def section(title):
    """Names the step that follows, so that a failure can be placed."""
    print("-- " + title)


def arguments():
    names = ("BULK_URL", "BULK_TENANT", "BULK_SECRET")
    values = sys.argv[1:] + [os.environ.get(name) for name in names[len(sys.argv) - 1:]]
    if len(values) < 3 or not all(values[:3]):
        sys.exit("usage: zendesk_client.py BASE_URL TENANT SECRET (or %s)" % ", ".join(names))
    return values[:3]


def client(base_url, tenant, secret):
    """A Zenpy client aimed at base_url, authenticating as zenpy does against Zendesk."""
    url = urlsplit(base_url)
    os.environ["ZENPY_FORCE_SCHEME"] = url.scheme
    host = url.netloc
    if "." in url.hostname:
        subdomain, domain = host.split(".", 1)
    else:
        os.environ["ZENPY_FORCE_NETLOC"] = host
        subdomain, domain = tenant, "localdomain"
    return Zenpy(subdomain=subdomain, domain=domain, email="admin@%s.test" % tenant,
                 token=secret, timeout=30)


def wait(zenpy, job, what, timeout=60.0):
    """Polls GET /api/v2/job_statuses/{id}.json until the job is no longer queued or working."""
    check(isinstance(job.id, str) and len(job.id) == 32
          and all(c in "0123456789abcdef" for c in job.id),
          "%s: job_status id is 32 hex digits" % what, job.id)
    check(job.status in JOB_STATUSES, "%s: job_status status %r is a Zendesk status" % (what, job.status))
    deadline = time.monotonic() + timeout
    seen = [job.status]
    while job.status in ("queued", "working"):
        if time.monotonic() > deadline:
            raise Failure("%s: job %s still %s after %ss (statuses seen: %s)"
                          % (what, job.id, job.status, timeout, seen))
        time.sleep(0.2)
        job = zenpy.job_status(id=job.id)
        if job.status != seen[-1]:
            seen.append(job.status)
    check(job.status == "completed", "%s: job %s completed (statuses seen: %s)" % (what, job.id, seen),
          job.status, job.message)
    return job


def results(job, what, count):
    items = list(job.results or [])
    check(job.total == count, "%s: total is %d" % (what, count), job.total)
    check(job.progress == count, "%s: progress is %d" % (what, count), job.progress)
    check(len(items) == count, "%s: %d results" % (what, count), [r.to_dict() for r in items])
    for position, item in enumerate(items):
        check(getattr(item, "index", None) == position,
              "%s: result %d has index %d (request order)" % (what, position, position), item.to_dict())
        check(item.status in RESULT_STATUSES, "%s: result %d status %r is known" % (what, position, item.status))
    return items


def expect_api_error(call, status, what, *words):
    try:
        answer = call()
    except APIException as error:
        response = error.response
        code = response.status_code if response is not None else None
        check(code == status, "%s: answered %d" % (what, status), code, str(error))
        text = str(error).lower()
        for word in words:
            check(word.lower() in text, "%s: error names %r" % (what, word), str(error))
        return error
    raise Failure("%s: expected HTTP %d, the call returned %r" % (what, status, answer))


def main():
    base_url, tenant, secret = arguments()
    zenpy = client(base_url, tenant, secret)
    run = uuid.uuid4().hex[:8]

    def email(name):
        return "%s.%s@example.com" % (name, run)

    section("create_many: three users")
    # create_many: three users, results in request order, each Created with an id.
    people = [
        User(name="Ada Agent", email=email("ada"), role="agent", external_id="ext-ada-" + run,
             phone="+15550100", tags=["bulk", "zenpy"]),
        User(name="Ed Enduser", email=email("ed"), role="end-user"),
        User(name="Al Admin", email=email("al"), role="admin", alias="Al"),
    ]
    job = zenpy.users.create(people)
    check(job.__class__.__name__ == "JobStatus", "create_many answered a job_status", job)
    job = wait(zenpy, job, "create_many")
    created = results(job, "create_many", 3)
    for position, (item, person) in enumerate(zip(created, people)):
        check(item.status == "Created", "create_many: result %d Created" % position, item.to_dict())
        check(isinstance(item.id, int) and item.id > 0,
              "create_many: result %d carries the new user's id" % position, item.id)
        check(getattr(item, "email", None) == person.email,
              "create_many: result %d names %s" % (position, person.email), item.to_dict())
    check(getattr(created[0], "external_id", None) == "ext-ada-" + run,
          "create_many: result 0 carries the external_id", created[0].to_dict())
    ids = [item.id for item in created]
    check(len(set(ids)) == 3, "create_many: three distinct ids", ids)

    section("create_or_update_many: one existing email, one new")
    # create_or_update_many: an existing email with a new name is Updated (same id), a new one Created.
    job = zenpy.users.create_or_update([
        User(name="Ada Renamed", email=email("ada")),
        User(name="Cy Newcomer", email=email("cy"), role="end-user"),
    ])
    job = wait(zenpy, job, "create_or_update_many")
    upserted = results(job, "create_or_update_many", 2)
    check(upserted[0].status == "Updated", "create_or_update_many: existing email Updated",
          upserted[0].to_dict())
    check(upserted[0].id == ids[0], "create_or_update_many: the update names the existing user's id",
          upserted[0].id, ids[0])
    check(upserted[1].status == "Created", "create_or_update_many: new email Created", upserted[1].to_dict())
    check(isinstance(upserted[1].id, int) and upserted[1].id not in ids,
          "create_or_update_many: the new user has a new id", upserted[1].id)
    ids.append(upserted[1].id)

    section("create_many: a batch with bad users")
    # create_many with bad users: each is a Failed result naming the field, the others are Created.
    job = zenpy.users.create([
        User(name="Good One", email=email("good1")),
        User(name="Wanda Wizard", email=email("wanda"), role="wizard"),
        User(name="Good Two", email=email("good2")),
        User(name="Mal Formed", email="not-an-email"),
    ])
    job = wait(zenpy, job, "create_many with bad users")
    mixed = results(job, "create_many with bad users", 4)
    for position in (0, 2):
        check(mixed[position].status == "Created", "bad batch: result %d Created" % position,
              mixed[position].to_dict())
    for position, field, value in ((1, "role", "wizard"), (3, "email", "not-an-email")):
        item = mixed[position]
        check(item.status == "Failed", "bad batch: result %d Failed" % position, item.to_dict())
        check(bool(getattr(item, "error", None)), "bad batch: result %d has an error" % position,
              item.to_dict())
        details = str(getattr(item, "details", "") or "")
        check(bool(details), "bad batch: result %d has details" % position, item.to_dict())
        check(field in (details + " " + str(item.error)).lower(),
              "bad batch: result %d names the field %r" % (position, field), item.to_dict())
        check(getattr(item, "id", None) is None, "bad batch: result %d has no id" % position,
              item.to_dict())
    ids += [mixed[0].id, mixed[2].id]

    section("update_many: two users by id")
    # update_many with ids in the records.
    job = zenpy.users.update([User(id=ids[1], name="Ed Updated"), User(id=ids[2], name="Al Updated")])
    job = wait(zenpy, job, "update_many")
    updated = results(job, "update_many", 2)
    for position, user_id in enumerate(ids[1:3]):
        check(updated[position].status == "Updated", "update_many: result %d Updated" % position,
              updated[position].to_dict())
        check(updated[position].id == user_id, "update_many: result %d names user %d" % (position, user_id),
              updated[position].to_dict())

    section("job_statuses and job_statuses/show_many")
    # job status list and show_many see the jobs.
    listing = zenpy.job_status()
    listed = [status.id for status in listing["job_statuses"]]
    check(job.id in listed, "job_statuses lists the latest job", job.id, listed)
    shown = zenpy.job_status(ids=[job.id])
    check([status.id for status in shown["job_statuses"]] == [job.id],
          "job_statuses/show_many returns the job asked for", shown)

    section("destroy_many: two users by id")
    # destroy_many (zenpy sends ?ids= and also a JSON body with the users).
    doomed = [ids[3], ids[4]]
    job = zenpy.users.delete([User(id=doomed[0]), User(id=doomed[1])])
    job = wait(zenpy, job, "destroy_many")
    deleted = results(job, "destroy_many", 2)
    for position, user_id in enumerate(doomed):
        check(deleted[position].status == "Deleted", "destroy_many: result %d Deleted" % position,
              deleted[position].to_dict())
        check(deleted[position].id == user_id, "destroy_many: result %d names user %d" % (position, user_id),
              deleted[position].to_dict())

    section("refusals: too many users, unknown job, wrong secret")
    # Refusals: more than 100 users is a 400 naming the limit; an unknown job is a 404; a wrong
    # secret is a 401.
    expect_api_error(lambda: zenpy.users.create([User(name="U%d" % i, email=email("u%d" % i))
                                                 for i in range(101)]),
                     400, "create_many with 101 users", "100")
    expect_api_error(lambda: zenpy.job_status(id="0" * 32), 404, "unknown job status")
    intruder = client(base_url, tenant, secret + "-wrong")
    expect_api_error(lambda: intruder.job_status(id=job.id), 401, "wrong secret")

    print("zendesk client: all checks passed")


if __name__ == "__main__":
    try:
        main()
    except Failure as failure:
        print("FAIL " + str(failure))
        sys.exit(1)
    except Exception as error:  # a library error the checks did not expect
        print("FAIL unexpected %s: %s" % (type(error).__name__, error))
        response = getattr(error, "response", None)
        if response is not None:
            print("     %s %s -> %s %s" % (response.request.method, response.request.url,
                                          response.status_code, response.text[:2000]))
        sys.exit(1)

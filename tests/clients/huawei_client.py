"""Drives the Huawei Workspace dialect of a running server with the official Huawei Cloud SDK
(huaweicloudsdkworkspace on huaweicloudsdkcore).

Usage: huawei_client.py BASE_URL TENANT KEY_ID SECRET
   (or the environment variables BULK_URL, BULK_TENANT, BULK_KEY_ID, BULK_SECRET)

The SDK signs every request with AK/SK (SDK-HMAC-SHA256): the AK is the credential's key id, the
SK its secret, and the project_id in every path is the tenant.

Prints every check it makes; exits non-zero with a message on the first failed expectation.
"""

import os
import sys
import uuid

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkworkspace.v2 import (
    BatchCreateUsersReq,
    BatchCreateUsersRequest,
    BatchDeleteUserReq,
    BatchDeleteUserRequest,
    CreateUserRequest,
    DeleteUserRequest,
    ListUsersRequest,
    WorkspaceClient,
)


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
    names = ("BULK_URL", "BULK_TENANT", "BULK_KEY_ID", "BULK_SECRET")
    values = sys.argv[1:] + [os.environ.get(name) for name in names[len(sys.argv) - 1:]]
    if len(values) < 4 or not all(values[:4]):
        sys.exit("usage: huawei_client.py BASE_URL TENANT KEY_ID SECRET (or %s)" % ", ".join(names))
    return values[:4]


def client(base_url, project_id, ak, sk):
    return (WorkspaceClient.new_builder()
            .with_credentials(BasicCredentials(ak, sk, project_id))
            .with_endpoints([base_url])
            .build())


def create(workspace, users):
    return workspace.batch_create_users(BatchCreateUsersRequest(body=BatchCreateUsersReq(users=users)))


def listing(workspace, **query):
    return workspace.list_users(ListUsersRequest(**query))


def refused(what, call, status=None):
    """Runs call, which must raise ClientRequestException; returns it."""
    try:
        answer = call()
    except ClientRequestException as error:
        print("     %s -> %s %s: %s" % (what, error.status_code, error.error_code, error.error_msg))
        if status is None:
            check(400 <= error.status_code < 500, "%s: refused with a 4xx" % what, error.status_code)
        else:
            check(error.status_code == status, "%s: refused with %d" % (what, status), error.status_code,
                  error.error_code, error.error_msg)
        return error
    raise Failure("%s: expected ClientRequestException, the call returned %r" % (what, answer))


def main():
    base_url, tenant, key_id, secret = arguments()
    workspace = client(base_url, tenant, key_id, secret)
    run = uuid.uuid4().hex[:8]
    alice, bob = "alice-" + run, "bob." + run
    password = "Ini7ial-Pa55-" + run

    section("list_users before anything is created")
    baseline = listing(workspace, limit=1000, offset=0).total_count
    check(isinstance(baseline, int), "list_users answers a total_count", baseline)

    section("batch-create: two valid users")
    # batch-create: two valid users, one activated by the admin with an initial password.
    answer = create(workspace, [
        CreateUserRequest(user_name=alice, user_email="alice.%s@example.com" % run,
                          active_type="USER_ACTIVATE", description="created by the Huawei SDK"),
        CreateUserRequest(user_name=bob, active_type="ADMIN_ACTIVATE", password=password,
                          user_phone="+15550101", alias_name="Bob", account_expires="0",
                          enable_change_password=True, next_login_change_password=True),
    ])
    check(answer.status_code == 200, "batch-create of 2 valid users answered 200", answer.status_code)
    check(password not in str(answer.raw_content), "batch-create answer does not echo the password")

    section("list_users: the new users, paging, user_name filter")
    # list: both users, with their fields; paging and the user_name filter.
    page = listing(workspace, limit=1000, offset=0)
    check(page.total_count == baseline + 2, "list_users total_count grew by 2", baseline, page.total_count)
    by_name = {user.user_name: user for user in page.users}
    check(alice in by_name and bob in by_name, "list_users lists both new users", sorted(by_name))
    a, b = by_name[alice], by_name[bob]
    check(bool(a.id) and bool(b.id) and a.id != b.id, "the users have distinct ids", a.id, b.id)
    check(a.user_email == "alice.%s@example.com" % run, "alice's user_email is listed", a.user_email)
    check(a.active_type == "USER_ACTIVATE", "alice's active_type is USER_ACTIVATE", a.active_type)
    check(a.description == "created by the Huawei SDK", "alice's description is listed", a.description)
    check(b.active_type == "ADMIN_ACTIVATE", "bob's active_type is ADMIN_ACTIVATE", b.active_type)
    check(b.user_phone == "+15550101", "bob's user_phone is listed", b.user_phone)
    check(b.account_expires == "0", "bob's account_expires is listed as \"0\"", b.account_expires)
    check(password not in str(page.raw_content), "list_users never shows the password")
    one = listing(workspace, limit=1, offset=0)
    check(one.total_count == baseline + 2 and len(one.users) == 1,
          "limit=1 answers one user and the full total_count", one.total_count, len(one.users))
    named = listing(workspace, user_name=alice)
    check(alice in [user.user_name for user in named.users], "user_name filter finds alice",
          [user.user_name for user in named.users])
    check(bob not in [user.user_name for user in named.users], "user_name filter leaves bob out",
          [user.user_name for user in named.users])

    section("batch-create: invalid and duplicate batches")
    # Invalid batches: a 400 whose WKS error names the user's index and field, and nothing stored.
    carol = "carol-" + run
    error = refused("batch with an invalid user_name", lambda: create(workspace, [
        CreateUserRequest(user_name=carol, user_email="carol.%s@example.com" % run),
        CreateUserRequest(user_name="bad name", user_email="bad.%s@example.com" % run),
    ]), 400)
    check(str(error.error_code).startswith("WKS."), "error_code is a WKS code", error.error_code)
    check("users[1]" in error.error_msg and "user_name" in error.error_msg,
          "error_msg names users[1] and user_name", error.error_msg)

    short = "Sh0rt!" + run[:1]  # 7 characters: below the 8-character minimum
    error = refused("batch with a too-short password", lambda: create(workspace, [
        CreateUserRequest(user_name=carol, active_type="ADMIN_ACTIVATE", password=short),
    ]), 400)
    check(str(error.error_code).startswith("WKS."), "error_code is a WKS code", error.error_code)
    check("users[0]" in error.error_msg and "password" in error.error_msg,
          "error_msg names users[0] and password", error.error_msg)
    check(short not in error.error_msg and short not in str(error),
          "the password value never appears in the error")

    error = refused("batch with an existing user_name", lambda: create(workspace, [
        CreateUserRequest(user_name=alice, user_email="alice2.%s@example.com" % run),
    ]), 400)
    check(str(error.error_code).startswith("WKS."), "error_code is a WKS code", error.error_code)
    check("user_name" in error.error_msg, "error_msg names user_name", error.error_msg)

    error = refused("batch naming one user twice", lambda: create(workspace, [
        CreateUserRequest(user_name=carol, user_email="carol.%s@example.com" % run),
        CreateUserRequest(user_name=carol, user_email="carol2.%s@example.com" % run),
    ]), 400)
    check(str(error.error_code).startswith("WKS."), "error_code is a WKS code", error.error_code)

    after = listing(workspace, limit=1000, offset=0)
    check(after.total_count == baseline + 2, "refused batches stored nothing", after.total_count)
    check(carol not in [user.user_name for user in after.users], "carol was never created")

    section("credentials: wrong SK, another project")
    # Credentials: a wrong SK and another project are refused.
    refused("a wrong SK", lambda: listing(client(base_url, tenant, key_id, secret + "x")), 401)
    refused("another tenant's project_id", lambda: listing(client(base_url, "other" + run, key_id, secret)))

    section("batch-delete and delete")
    # Delete: batch-delete one, delete the other; the list is back to where it was.
    answer = workspace.batch_delete_user(BatchDeleteUserRequest(body=BatchDeleteUserReq(user_ids=[a.id])))
    check(answer.status_code == 204, "batch-delete answered 204", answer.status_code)
    answer = workspace.delete_user(DeleteUserRequest(user_id=b.id))
    check(answer.status_code == 204, "delete answered 204", answer.status_code)
    final = listing(workspace, limit=1000, offset=0)
    check(final.total_count == baseline, "list_users total_count is back to %d" % baseline,
          final.total_count)
    names = [user.user_name for user in final.users]
    check(alice not in names and bob not in names, "both users are gone", names)
    refused("deleting a deleted user", lambda: workspace.delete_user(DeleteUserRequest(user_id=b.id)), 404)

    print("huawei client: all checks passed")


if __name__ == "__main__":
    try:
        main()
    except Failure as failure:
        print("FAIL " + str(failure))
        sys.exit(1)
    except ClientRequestException as error:  # a refusal the checks did not expect
        print("FAIL unexpected ClientRequestException: status %s, error_code %s, error_msg %s"
              % (error.status_code, error.error_code, error.error_msg))
        sys.exit(1)
    except Exception as error:
        print("FAIL unexpected %s: %s" % (type(error).__name__, error))
        sys.exit(1)

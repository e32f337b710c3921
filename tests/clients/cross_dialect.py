"""One set of users, two dialects: a user created with the Huawei SDK is the user zenpy finds by
email, updates and deletes, and Huawei's listing follows.

Usage: cross_dialect.py BASE_URL TENANT KEY_ID SECRET
   (or the environment variables BULK_URL, BULK_TENANT, BULK_KEY_ID, BULK_SECRET)

Prints every check it makes; exits non-zero with a message on the first failed expectation.
"""

import sys
import uuid

from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkworkspace.v2 import BatchCreateUsersReq, BatchCreateUsersRequest, CreateUserRequest
from zenpy.lib.api_objects import User

import huawei_client
import zendesk_client
from huawei_client import Failure, check, section


def main():
    base_url, tenant, key_id, secret = huawei_client.arguments()
    workspace = huawei_client.client(base_url, tenant, key_id, secret)
    zenpy = zendesk_client.client(base_url, tenant, secret)
    run = uuid.uuid4().hex[:8]
    email = "hana.%s@example.com" % run

    section("Huawei batch-create, then zenpy create_or_update_many by email")
    # Huawei creates, Zendesk finds the same user by email.
    answer = workspace.batch_create_users(BatchCreateUsersRequest(body=BatchCreateUsersReq(users=[
        CreateUserRequest(user_name="hana-" + run, user_email=email, active_type="USER_ACTIVATE"),
    ])))
    check(answer.status_code == 200, "Huawei batch-create answered 200", answer.status_code)
    listed = [user for user in huawei_client.listing(workspace, limit=1000, offset=0).users
              if user.user_name == "hana-" + run]
    check(len(listed) == 1, "Huawei lists the new user", listed)
    huawei_id = listed[0].id

    job = zendesk_client.wait(zenpy, zenpy.users.create_or_update([User(name="Hana Zendesk", email=email)]),
                              "create_or_update_many of a Huawei user")
    [result] = zendesk_client.results(job, "create_or_update_many of a Huawei user", 1)
    check(result.status == "Updated", "Zendesk updates the user Huawei created (matched by email)",
          result.to_dict())
    check(str(result.id) == str(huawei_id), "Zendesk's id is the id Huawei lists", result.id, huawei_id)

    section("zenpy destroy_many, then Huawei list_users")
    # Zendesk deletes the user Huawei created, and Huawei no longer lists it.
    job = zendesk_client.wait(zenpy, zenpy.users.delete([User(id=int(result.id))]),
                              "destroy_many of a Huawei user")
    [result] = zendesk_client.results(job, "destroy_many of a Huawei user", 1)
    check(result.status == "Deleted", "Zendesk deletes the user Huawei created", result.to_dict())
    names = [user.user_name for user in huawei_client.listing(workspace, limit=1000, offset=0).users]
    check("hana-" + run not in names, "Huawei no longer lists the user Zendesk deleted", names)

    print("cross dialect: all checks passed")


if __name__ == "__main__":
    try:
        main()
    except Failure as failure:
        print("FAIL " + str(failure))
        sys.exit(1)
    except zendesk_client.Failure as failure:
        print("FAIL " + str(failure))
        sys.exit(1)
    except ClientRequestException as error:
        print("FAIL unexpected ClientRequestException: status %s, error_code %s, error_msg %s"
              % (error.status_code, error.error_code, error.error_msg))
        sys.exit(1)
    except Exception as error:
        print("FAIL unexpected %s: %s" % (type(error).__name__, error))
        sys.exit(1)

"""moto's server as the tests run it: IAM enforced on every request, as AWS enforces it.

moto_server as shipped authorizes nothing unless told to, and where it does (with
INITIAL_NO_AUTH_ACTION_COUNT) it authorizes differently from AWS in ways that would hide or
invent permission faults. This launcher serves moto's own application with its authorization
replaced by one that follows AWS's rules for the services the project uses:

- every request must be signed (SigV4, checked by moto's own signature code) by a known access
  key, or be an S3 presigned URL, which acts as the key that signed it; anything else is denied;
- DynamoDB requests are authorized against the table ARN, or the index ARN for a Query or Scan
  of an index (moto checks every DynamoDB request against `*`);
- a TransactWriteItems is authorized item by item as PutItem, UpdateItem, DeleteItem or
  ConditionCheckItem, and a TransactGetItems as GetItem (IAM has no Transact* action);
- the condition key `dynamodb:LeadingKeys` carries the partition keys a request touches, and the
  operators `StringEquals`, `StringLike` (and their `Not` and `ForAllValues:` / `ForAnyValue:`
  forms) are evaluated; a condition this launcher cannot evaluate fails the request with an
  error that says so, never silently passes;
- KMS requests are authorized against the ARN of the key they name (by ARN, id or alias; a
  Decrypt without KeyId against the key its ciphertext names), with the condition keys
  `kms:EncryptionContextKeys` (multi-valued) and `kms:EncryptionContext:{key}` from the
  request's EncryptionContext;
- SQS batch calls are authorized as the action they batch (SendMessage, DeleteMessage,
  ChangeMessageVisibility), against the queue's ARN;
- S3 reads of a given version (GetObject, HeadObject, a CopyObject's source with a versionId) need
  s3:GetObjectVersion, and a DeleteObject of one s3:DeleteObjectVersion, as on AWS;
- S3 CopyObject also needs s3:GetObject on the source; a GetObject or HeadObject of a key (or of
  a version) that does not exist is answered 403, not 404, unless the caller may s3:ListBucket
  (as S3 does);
- a DynamoDB or KMS denial is answered as those services answer it (JSON 400
  AccessDeniedException, which the SDKs parse), with AWS's message naming the principal, the action and the resource, and
  an unknown access key as UnrecognizedClientException (moto answers both in XML).

Not modelled (none is relied on): resource policies (bucket and queue policies), session
credentials, permission boundaries, and the signature of presigned URLs (the signer's policy is
applied; the signature itself is not recomputed).

At start the launcher creates the administrator `bulk-test-admin` (every action on every
resource) and writes its access key as JSON `{"access_key_id", "secret_access_key"}` to the file
given with `--admin-file`; the tests create every other principal through the IAM API with it.
Every decision is recorded: `GET /__iam/decisions` answers them as JSON, a list of
`{principal, action, resource, allowed, statement}` (`statement`: the Sid of the statement that
allowed it); `DELETE` clears them.

Arguments: `--host`, `--port`, `--admin-file`, `--serialized` (one request at a time: racing
conditional writes are atomic, as on DynamoDB; moto_server serves requests on threads without
locks), `--copy-once-per-transaction` (moto takes a rollback copy of the whole table once per item
of a transaction; this takes it once per transaction, which changes none of moto's answers).
"""

import argparse
import copy as _copy
import fnmatch
import json
import os
import re
import sys
import threading
import urllib.parse

os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"

from moto import settings  # noqa: E402
from moto.core.authorization import ActionAuthenticatorMixin  # noqa: E402
from moto.core.exceptions import JsonRESTError  # noqa: E402
from moto.iam.access_control import IAMPolicy, IAMRequest, S3IAMRequest  # noqa: E402
from moto.iam.models import iam_backends  # noqa: E402
from moto.s3.exceptions import S3AccessDeniedError  # noqa: E402
from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app  # noqa: E402
from werkzeug.serving import run_simple  # noqa: E402

settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
ACCOUNT = "123456789012"
PARTITION = "aws"
ADMIN = "bulk-test-admin"
DECISIONS_PATH = "/__iam/decisions"

_decisions = []
_decisions_lock = threading.Lock()


class Unevaluable(Exception):
    """A policy this launcher cannot evaluate faithfully."""


# ------------------------------------------------------------------------------------------------
# Policy evaluation (identity policies only: explicit Deny wins, then any Allow, else deny)
# ------------------------------------------------------------------------------------------------


def _listed(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _like(pattern, text, case_sensitive=True):
    if not case_sensitive:
        pattern, text = pattern.lower(), text.lower()
    return fnmatch.fnmatchcase(text, pattern)


def _matches(statement, element, value, case_sensitive):
    """Whether the statement's `element` (Action or Resource, or their Not forms) covers value."""
    if element in statement:
        return any(_like(p, value, case_sensitive) for p in _listed(statement[element]))
    negated = "Not" + element
    if negated in statement:
        return not any(_like(p, value, case_sensitive) for p in _listed(statement[negated]))
    return False


_OPERATORS = {
    "StringEquals": lambda want, got: got == want,
    "StringNotEquals": lambda want, got: got != want,
    "StringLike": lambda want, got: _like(want, got),
    "StringNotLike": lambda want, got: not _like(want, got),
}
_KNOWN_KEYS = {"dynamodb:leadingkeys", "kms:encryptioncontextkeys"}
_KNOWN_KEY_PREFIXES = ("kms:encryptioncontext:",)


def _condition_holds(operator, key, wanted, context):
    qualifier, _, base = operator.rpartition(":")
    if base not in _OPERATORS or qualifier not in ("", "ForAllValues", "ForAnyValue"):
        raise Unevaluable(f"condition operator {operator}")
    if key.lower() not in _KNOWN_KEYS and not key.lower().startswith(_KNOWN_KEY_PREFIXES):
        raise Unevaluable(f"condition key {key}")
    test = _OPERATORS[base]
    wanted = _listed(wanted)
    negated = base.startswith("StringNot")
    values = context.get(key.lower())
    if qualifier == "ForAllValues":
        # As in IAM: true when the request has no value for the key at all.
        return all(
            (all if negated else any)(test(w, v) for w in wanted) for v in (values or [])
        )
    if not values:
        return False
    if qualifier == "ForAnyValue":
        return any((all if negated else any)(test(w, v) for w in wanted) for v in values)
    if len(values) != 1:
        raise Unevaluable(f"{operator} on the multi-valued key {key}")
    return (all if negated else any)(test(w, values[0]) for w in wanted)


def _applies(statement, action, resource, context):
    if not _matches(statement, "Action", action, case_sensitive=False):
        return False
    if not _matches(statement, "Resource", resource, case_sensitive=True):
        return False
    for operator, pairs in (statement.get("Condition") or {}).items():
        for key, wanted in pairs.items():
            if not _condition_holds(operator, key, wanted, context):
                return False
    return True


def decide(documents, action, resource, context):
    """(allowed, the Sid of the first statement that allows it)."""
    allowing = None
    for document in documents:
        for statement in _listed(document.get("Statement")):
            if _applies(statement, action, resource, context):
                if statement.get("Effect") == "Deny":
                    return False, None
                if allowing is None:
                    allowing = statement.get("Sid", "")
    return allowing is not None, allowing



# ------------------------------------------------------------------------------------------------
# Principals
# ------------------------------------------------------------------------------------------------


def _iam():
    return iam_backends[ACCOUNT][PARTITION]


def _principal(access_key_id):
    """(user name, policy documents) of an access key, or None."""
    backend = _iam()
    key = backend.access_keys.get(access_key_id)
    if key is None or key.status != "Active":
        return None
    user = key.user_name
    documents = []
    for name in backend.list_user_policies(user):
        documents.append(_document(backend.get_user_policy(user, name)))
    attached, _ = backend.list_attached_user_policies(user)
    documents.extend(_document(policy) for policy in attached)
    return user, documents


def _document(policy):
    # IAMPolicy knows every shape moto stores a policy in (inline dicts, managed versions).
    return IAMPolicy(policy)._policy_json


def create_admin(path):
    backend = _iam()
    backend.create_user(region_name="us-east-1", user_name=ADMIN)
    backend.put_user_policy(
        ADMIN,
        "everything",
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    key = backend.create_access_key(ADMIN)
    with open(path + ".part", "w") as out:
        json.dump(
            {"access_key_id": key.access_key_id, "secret_access_key": key.secret_access_key},
            out,
        )
    os.replace(path + ".part", path)


# ------------------------------------------------------------------------------------------------
# What a request needs: (action, resource, condition context) triples, by service
# ------------------------------------------------------------------------------------------------


def _dynamodb_key_attribute(region, table, index=None):
    from moto.dynamodb.models import dynamodb_backends

    try:
        found = dynamodb_backends[ACCOUNT][region].get_table(table)
    except Exception:
        return None
    if index:
        for candidate in list(found.global_indexes) + list(found.indexes):
            if candidate.name == index:
                return next(
                    (k["AttributeName"] for k in candidate.schema if k["KeyType"] == "HASH"), None
                )
        return None
    return found.hash_key_attr


def _scalar(value):
    """The text of an attribute value in DynamoDB JSON ({"S": "x"}, {"N": "1"}, ...)."""
    if isinstance(value, dict) and len(value) == 1:
        (inner,) = value.values()
        if isinstance(inner, str):
            return inner
    return json.dumps(value, sort_keys=True)


def _leading(region, table, items):
    attribute = _dynamodb_key_attribute(region, table)
    if attribute is None:
        return {}
    return {
        "dynamodb:leadingkeys": [
            _scalar(item[attribute]) for item in items if item and attribute in item
        ]
    }


def _query_leading_key(region, body):
    attribute = _dynamodb_key_attribute(region, body.get("TableName"), body.get("IndexName"))
    expression = body.get("KeyConditionExpression") or ""
    names = body.get("ExpressionAttributeNames") or {}
    values = body.get("ExpressionAttributeValues") or {}
    for name, placeholder in re.findall(r"([#\w.]+)\s*=\s*(:\w+)", expression):
        if names.get(name, name) == attribute and placeholder in values:
            return {"dynamodb:leadingkeys": [_scalar(values[placeholder])]}
    return {}


_TRANSACT_WRITE = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def dynamodb_needs(handler):
    region = handler.region
    operation = handler._get_action()
    try:
        body = json.loads(handler.raw_body or b"{}")
    except ValueError:
        body = {}

    def table_arn(name, index=None):
        arn = f"arn:{PARTITION}:dynamodb:{region}:{ACCOUNT}:table/{name}"
        return f"{arn}/index/{index}" if index else arn

    if operation in ("GetItem", "PutItem", "UpdateItem", "DeleteItem"):
        table = body.get("TableName")
        item = body.get("Item") if operation == "PutItem" else body.get("Key")
        return [(f"dynamodb:{operation}", table_arn(table), _leading(region, table, [item]))]
    if operation in ("Query", "Scan"):
        context = _query_leading_key(region, body) if operation == "Query" else {}
        return [
            (
                f"dynamodb:{operation}",
                table_arn(body.get("TableName"), body.get("IndexName")),
                context,
            )
        ]
    if operation in ("BatchGetItem", "BatchWriteItem"):
        needs = []
        for table, request in (body.get("RequestItems") or {}).items():
            if operation == "BatchGetItem":
                items = request.get("Keys") or []
            else:
                items = [
                    (entry.get("PutRequest") or {}).get("Item")
                    or (entry.get("DeleteRequest") or {}).get("Key")
                    for entry in request
                ]
            needs.append((f"dynamodb:{operation}", table_arn(table), _leading(region, table, items)))
        return needs
    if operation == "TransactWriteItems":
        needs = []
        for entry in body.get("TransactItems") or []:
            for kind, action in _TRANSACT_WRITE.items():
                if kind in entry:
                    part = entry[kind]
                    table = part.get("TableName")
                    item = part.get("Item") if kind == "Put" else part.get("Key")
                    needs.append(
                        (f"dynamodb:{action}", table_arn(table), _leading(region, table, [item]))
                    )
        return needs
    if operation == "TransactGetItems":
        return [
            (
                "dynamodb:GetItem",
                table_arn(entry["Get"].get("TableName")),
                _leading(region, entry["Get"].get("TableName"), [entry["Get"].get("Key")]),
            )
            for entry in body.get("TransactItems") or []
            if "Get" in entry
        ]
    if "TableName" in body:
        return [(f"dynamodb:{operation}", table_arn(body["TableName"]), {})]
    return [(f"dynamodb:{operation}", "*", {})]


def _kms_key_arn(region, key_id, ciphertext_blob):
    from moto.kms.models import kms_backends

    backend = kms_backends[ACCOUNT][region]
    try:
        if not key_id and ciphertext_blob:
            import base64

            from moto.kms.utils import _deserialize_ciphertext_blob

            key_id = _deserialize_ciphertext_blob(base64.b64decode(ciphertext_blob)).key_id
        return backend.describe_key(key_id).arn
    except Exception:
        return f"arn:{PARTITION}:kms:{region}:{ACCOUNT}:key/{key_id}" if key_id else "*"


def kms_needs(handler):
    operation = handler._get_action()
    try:
        body = json.loads(handler.raw_body or b"{}")
    except ValueError:
        body = {}
    if operation in ("CreateKey", "ListKeys", "ListAliases", "GenerateRandom"):
        return [(f"kms:{operation}", "*", {})]
    arn = _kms_key_arn(
        handler.region, body.get("KeyId") or body.get("TargetKeyId"), body.get("CiphertextBlob")
    )
    context = {}
    encryption_context = body.get("EncryptionContext")
    if isinstance(encryption_context, dict):
        context["kms:encryptioncontextkeys"] = sorted(encryption_context)
        for name, value in encryption_context.items():
            context[f"kms:encryptioncontext:{name.lower()}"] = [value]
    return [(f"kms:{operation}", arn, context)]


_SQS_BATCHES = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def sqs_needs(handler):
    operation = handler._get_action()
    action = _SQS_BATCHES.get(operation, operation)
    try:
        body = json.loads(handler.raw_body or b"{}")
    except ValueError:
        body = {}
    parameters = dict(body) if isinstance(body, dict) else {}
    for name, values in (getattr(handler, "querystring", None) or {}).items():
        parameters.setdefault(name, values[0] if values else "")
    name = None
    if parameters.get("QueueUrl"):
        name = urllib.parse.urlsplit(parameters["QueueUrl"]).path.rstrip("/").rsplit("/", 1)[-1]
    elif parameters.get("QueueName"):
        name = parameters["QueueName"]
    resource = f"arn:{PARTITION}:sqs:{handler.region}:{ACCOUNT}:{name}" if name else "*"
    return [(f"sqs:{action}", resource, {})]


def s3_needs(handler, resource):
    action = handler.data.get("Action") or handler._get_action()
    query = getattr(handler, "querystring", None) or {}
    if action == "GetObject" and "versionId" in query:
        # A HEAD of a version (moto maps only a GET of one to GetObjectVersion).
        action = "GetObjectVersion"
    version = (query.get("versionId") or [None])[0]
    needs = [(f"s3:{action}", resource, {"s3:versionid": [version]} if version else {})]
    source = handler.headers.get("x-amz-copy-source")
    if source and action == "PutObject":
        parts = urllib.parse.urlsplit(source)
        path = urllib.parse.unquote(parts.path).lstrip("/")
        version = (urllib.parse.parse_qs(parts.query).get("versionId") or [None])[0]
        read = "s3:GetObjectVersion" if version else "s3:GetObject"
        context = {"s3:versionid": [version]} if version else {}
        needs.append((read, f"arn:{PARTITION}:s3:::{path}", context))
    return needs


def _s3_key_missing(resource, version=None):
    from moto.s3.models import s3_backends

    path = resource.split(":::", 1)[-1]
    if "/" not in path:
        return False
    bucket, key = path.split("/", 1)
    try:
        found = s3_backends[ACCOUNT][PARTITION].get_object(bucket, key, version_id=version)
        return found is None
    except Exception:
        return True


# ------------------------------------------------------------------------------------------------
# Denials, as each service answers them
# ------------------------------------------------------------------------------------------------


class DynamoDBAccessDenied(JsonRESTError):
    code = 400

    def __init__(self, message):
        super().__init__("com.amazonaws.dynamodb.v20120810#AccessDeniedException", message)


class SQSAccessDenied(JsonRESTError):
    code = 403

    def __init__(self, message):
        super().__init__("com.amazon.coral.service#AccessDeniedException", message)


class S3Denied(S3AccessDeniedError):
    def __init__(self, message):
        S3AccessDeniedError.__init__(self)
        self.message = message


class KMSAccessDenied(JsonRESTError):
    code = 400

    def __init__(self, message):
        super().__init__("AccessDeniedException", message)


class DynamoDBUnrecognizedClient(JsonRESTError):
    code = 400

    def __init__(self):
        super().__init__(
            "com.amazon.coral.service#UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )


class EmulatorCannotEvaluate(JsonRESTError):
    code = 500

    def __init__(self, message):
        super().__init__("InternalFailure", message)


def _deny(service, user, action, resource):
    message = (
        f"User: arn:{PARTITION}:iam::{ACCOUNT}:user/{user} is not authorized to perform: "
        f"{action} on resource: {resource} because no identity-based policy allows the "
        f"{action} action"
    )
    print(f"DENIED {message}", file=sys.stderr, flush=True)
    if service == "dynamodb":
        raise DynamoDBAccessDenied(message)
    if service == "sqs":
        raise SQSAccessDenied(message)
    if service == "s3":
        raise S3Denied(message)
    if service == "kms":
        raise KMSAccessDenied(message)
    from moto.core.exceptions import AccessDeniedError

    raise AccessDeniedError(user_arn=f"arn:{PARTITION}:iam::{ACCOUNT}:user/{user}", action=action)


def _record(user, action, resource, allowed, statement=None):
    with _decisions_lock:
        _decisions.append(
            {
                "principal": user,
                "action": action,
                "resource": resource,
                "allowed": allowed,
                "statement": statement,
            }
        )


# ------------------------------------------------------------------------------------------------
# The authorization that replaces moto's
# ------------------------------------------------------------------------------------------------


def _presigned_key(handler):
    query = getattr(handler, "querystring", None) or {}
    credential = (query.get("X-Amz-Credential") or query.get("AWSAccessKeyId") or [""])[0]
    return credential.split("/", 1)[0] or None


def _authorize(self, iam_request_cls, resource="*"):
    service = getattr(self, "service_name", None) or ""
    if service == "s3" and self.headers.get("Authorization") is None:
        access_key_id = _presigned_key(self)
        if access_key_id is None:
            _deny("s3", "anonymous", "s3:" + str(self.data.get("Action")), resource)
    else:
        if self.headers.get("Authorization") is None:
            _deny(service, "anonymous", f"{service}:{self._get_action()}", resource)
        signer = IAMRequest._get_string_between("Credential=", "/", self.headers["Authorization"])
        if service == "dynamodb" and _principal(signer) is None:
            raise DynamoDBUnrecognizedClient()
        path = self.raw_path
        query = urllib.parse.urlparse(self.uri).query
        if query:
            path += "?" + query
        request = iam_request_cls(
            account_id=self.current_account,
            method=self.method,
            path=path,
            data=self.data,
            body=self.raw_body,
            headers=self.headers,
            action=self._get_action(),
        )
        request.check_signature()
        access_key_id = request._access_key._access_key_id
        if request._action == "sts:GetCallerIdentity":
            return
    found = _principal(access_key_id)
    if found is None:
        _deny(service, f"(unknown key {access_key_id})", service, resource)
    user, documents = found
    if service == "dynamodb":
        needs = dynamodb_needs(self)
    elif service == "sqs":
        needs = sqs_needs(self)
    elif service == "s3":
        needs = s3_needs(self, resource)
    elif service == "kms":
        needs = kms_needs(self)
    else:
        needs = [(f"{service}:{self._get_action()}", resource, {})]
    for action, arn, context in needs:
        try:
            allowed, statement = decide(documents, action, arn, context)
        except Unevaluable as problem:
            raise EmulatorCannotEvaluate(
                f"the test emulator cannot evaluate the policy of {user} for {action} on "
                f"{arn}: {problem}"
            )
        version = (context.get("s3:versionid") or [None])[0]
        reads = action in ("s3:GetObject", "s3:GetObjectVersion")
        if allowed and reads and _s3_key_missing(arn, version):
            # S3 tells a missing key (404) only to who may list the bucket.
            bucket_arn = arn.split("/", 1)[0]
            listing, listed_by = decide(documents, "s3:ListBucket", bucket_arn, {})
            _record(user, "s3:ListBucket", bucket_arn, listing, listed_by)
            if not listing:
                _deny(service, user, action, arn)
        _record(user, action, arn, allowed, statement)
        if not allowed:
            _deny(service, user, action, arn)


ActionAuthenticatorMixin._authenticate_and_authorize_action = _authorize


def _s3_authorize(self, bucket_name=None, key_name=None):
    path = f"{bucket_name or '*'}/{key_name}" if key_name else (bucket_name or "*")
    _authorize(self, S3IAMRequest, f"arn:{PARTITION}:s3:::{path}")


ActionAuthenticatorMixin._authenticate_and_authorize_s3_action = _s3_authorize


def _normal_authorize(self, resource="*"):
    _authorize(self, IAMRequest, resource)


ActionAuthenticatorMixin._authenticate_and_authorize_normal_action = _normal_authorize


# ------------------------------------------------------------------------------------------------
# One rollback copy per transaction
# ------------------------------------------------------------------------------------------------


def copy_once_per_transaction():
    import moto.dynamodb.models as models

    transaction = threading.local()

    class CopyOncePerTransaction:
        def __getattr__(self, name):
            return getattr(_copy, name)

        @staticmethod
        def deepcopy(value, memo=None):
            copies = getattr(transaction, "copies", None)
            if copies is None:
                return _copy.deepcopy(value, memo)
            if id(value) not in copies:
                copies[id(value)] = _copy.deepcopy(value, memo)
            return copies[id(value)]

    original = models.DynamoDBBackend.transact_write_items

    def transact_once(self, transact_items):
        transaction.copies = {}
        try:
            return original(self, transact_items)
        finally:
            transaction.copies = None

    models.copy = CopyOncePerTransaction()
    models.DynamoDBBackend.transact_write_items = transact_once


# ------------------------------------------------------------------------------------------------
# Serving
# ------------------------------------------------------------------------------------------------


def with_decisions(application):
    def serve(environ, start_response):
        if environ.get("PATH_INFO") != DECISIONS_PATH:
            return application(environ, start_response)
        with _decisions_lock:
            body = json.dumps(_decisions).encode()
            if environ.get("REQUEST_METHOD") == "DELETE":
                _decisions.clear()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    return serve


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--admin-file", required=True)
    parser.add_argument("--serialized", action="store_true")
    parser.add_argument("--copy-once-per-transaction", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    if args.copy_once_per_transaction:
        copy_once_per_transaction()
    create_admin(args.admin_file)
    run_simple(
        args.host,
        args.port,
        with_decisions(DomainDispatcherApplication(create_backend_app)),
        threaded=not args.serialized,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    sys.exit(main())

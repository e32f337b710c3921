"""moto_server for the DynamoDB benchmark, with one change that alters no answer.

moto's TransactWriteItems takes a rollback copy of the whole table once per item of the
transaction (100 deep copies of the table for a 100-item transaction), which makes a 10,000-user
run take hours. Every one of those copies is taken before any item is written, so they are all
equal: this launcher makes the first copy of each transaction and hands it out for the others.
The benchmark counts the requests the adapter sends; moto's answers are unchanged.
"""
import copy
import sys
import threading

import moto.dynamodb.models as models
from moto.server import main

_transaction = threading.local()


class _CopyOncePerTransaction:
    """The `copy` module as moto's DynamoDB models see it."""

    def __getattr__(self, name):
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value, memo=None):
        copies = getattr(_transaction, "copies", None)
        if copies is None:
            return copy.deepcopy(value, memo)
        if id(value) not in copies:
            copies[id(value)] = copy.deepcopy(value, memo)
        return copies[id(value)]


_transact_write_items = models.DynamoDBBackend.transact_write_items


def transact_write_items(self, transact_items):
    _transaction.copies = {}
    try:
        return _transact_write_items(self, transact_items)
    finally:
        _transaction.copies = None


models.copy = _CopyOncePerTransaction()
models.DynamoDBBackend.transact_write_items = transact_write_items

if __name__ == "__main__":
    main(sys.argv[1:])

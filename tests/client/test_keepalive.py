"""A refresh reuses its kept-alive connection cleanly: no urllib3 retry warning (issue 26).

ngclient probes for the next root version on every refresh, and the answer is
a 404; its body was left unread when the connection went back to the pool,
so the next request on it (timestamp.json) failed with ``ResponseNotReady``
and urllib3 logged "Retrying ..." on every refresh of every host.
"""

from __future__ import annotations

import logging

from custody.client.updater import SecureUpdater


def test_a_refresh_and_lookups_log_no_retry(home, caplog):
    caplog.set_level(logging.DEBUG, logger="urllib3")
    for _ in range(2):  # two sessions, as two polls of a long-lived agent
        updater = SecureUpdater(home)
        updater.refresh()
        assert updater.target("packages/nothing/index.json") is None
        assert updater.package_names() == {"hello"}  # the layouts role, through TUF
    retries = [r.getMessage() for r in caplog.records if "Retrying" in r.getMessage()]
    assert retries == []
    assert updater.fetcher.bytes_downloaded > 0

import logging

from core.logs import REDACTED, Redact


def test_secrets_are_scrubbed_from_messages_arguments_and_tracebacks(caplog):
    logger = logging.getLogger("test.redact")
    caplog.handler.addFilter(Redact(["123:SECRET", ""]))
    with caplog.at_level(logging.DEBUG):
        logger.debug("calling %s/bot%s/getMe", "http://x", "123:SECRET")
        try:
            raise RuntimeError("bad url http://x/bot123:SECRET/getFile")
        except RuntimeError:
            logger.exception("failed")
    assert "SECRET" not in caplog.text
    assert f"http://x/bot{REDACTED}/getMe" in caplog.text
    assert f"bad url http://x/bot{REDACTED}/getFile" in caplog.text

"""Recipients in control: preferences, one-click unsubscribe, SMS opt-out, suppressions, quiet hours.

One module per role:

- :mod:`.tables` — the stored shape (``preference``, ``person_settings``);
- :mod:`.quiet_hours` — pure: when may a notice reach a person, given their timezone and window;
- :mod:`.rules` — what the ledger applies when it creates deliveries (opt-outs, quiet hours);
- :mod:`.preferences` — reading and saving a person's choices, one-click unsubscribe;
- :mod:`.suppressions` — the suppression list, SMS STOP/START, Twilio status callbacks;
- :mod:`.soft_failures` — repeated soft failures put an address on the list;
- :mod:`.sms` — pure: inbound keywords and Twilio status ranks;
- :mod:`.pages` — the preferences page (jinja2, autoescaped, no JavaScript, no external assets);
- :mod:`.web` — the HTTP routes ``/u/{token}``, ``/hooks/twilio/status``, ``/hooks/twilio/inbound``.
"""

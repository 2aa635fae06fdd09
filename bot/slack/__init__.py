"""Herald's Slack front door: ``/announce`` with preview and live progress, the Home tab.

Modules, from the edge inwards: :mod:`~bot.slack.app` builds the Bolt AsyncApp from settings;
:mod:`~bot.slack.listeners` holds the thin listeners (ack, parse, hand off); :mod:`~bot.slack.flows`
the use cases they hand off to; :mod:`~bot.slack.commands` parses the typed form and the modal
(pure); Block Kit is rendered (pure) by :mod:`~bot.slack.announce_blocks` (the form, the preview),
:mod:`~bot.slack.status_blocks` (progress, status, list, Home) over the primitives of
:mod:`~bot.slack.blocks`; :mod:`~bot.slack.client` builds the Web API client;
:mod:`~bot.slack.auth` decides who may announce; :mod:`~bot.slack.pending` keeps previews until
Send; :mod:`~bot.slack.progress` keeps the progress message up to date; :mod:`~bot.slack.tasks`
tracks the work started after an ack.
"""

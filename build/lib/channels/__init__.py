"""Delivery adapters: email (aiosmtplib), sms (twilio). Never imports bot."""

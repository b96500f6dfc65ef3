"""A mail add-on: sends invoices through the operator's mail server."""

import smtplib
from email.message import EmailMessage


def send_invoice(host: str, port: int, recipient: str) -> None:
    message = EmailMessage()
    message["From"] = "billing@shop.example"
    message["To"] = recipient
    message["Subject"] = "Your invoice"
    message.set_content("Please find your invoice attached.")
    with smtplib.SMTP(host, port, timeout=5) as smtp:
        smtp.send_message(message)

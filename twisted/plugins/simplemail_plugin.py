from twisted.application.service import ServiceMaker

simplemail = ServiceMaker(
    "simplemail",
    "twisted_mail.service.tap",
    "A multi-user mail server keeping an mbox per user in a spool directory.",
    "simplemail",
)

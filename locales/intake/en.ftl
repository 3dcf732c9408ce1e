# The public report intake, in English: the reference every other language
# follows (docs/intake.md says how to add one). Keep sentences short and
# plain: many readers use a phone, a second language or a screen reader.

language-name = English
page-title = Report a situation safely
danger-heading = In danger now?
danger-call = If you or someone else is in danger now, call { $number }.
intro = You do not need to give your name. We do not record your address on the internet, your device or your browser. After sending, you get a receipt number: keep it to come back and read our answer.
what-label = What happened?
what-hint = Say what you saw or lived: work, pay, documents, threats, where people sleep.
country-label = Country
town-label = Town or city
when-label = When did it happen?
when-hint = A date, or words such as "last week" or "since March".
people-legend = People involved (optional)
people-hint = Only what you know. It helps us find the same people in other reports.
name-label = Name
phone-label = Phone number
workplace-label = Workplace
plate-label = Vehicle number plate
in-danger-label = Are you in danger now?
yes = Yes
no = No
contact-legend = How can we contact you?
contact-receipt = Only through my receipt
contact-phone = By phone
contact-email = By e-mail
contact-value-label = Your phone number or e-mail
consent-label = I agree that this report may be passed to the police.
send = Send the report
receipt-heading = Your receipt
receipt-keep = Write this number down and keep it safe. It is the only way to come back to this report, and we cannot show it again. Do not keep it where someone who hurts you could find it.
receipt-enter = Enter your receipt number
receipt-open = Open my report
receipt-wrong = This number does not open a report. Check it and try again.
busy = Many reports are arriving right now. Please try again in a few minutes.
error-required = Please fill this in.
error-too-long = This is too long: at most { $max } characters.
error-choose = Please choose one of the options.
error-characters = This contains characters that cannot be sent. Please type it again.

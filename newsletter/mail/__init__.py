"""Mail: the emails, and the way out. ``render`` turns an edition's picks into an HTML and a
plain-text part (Jinja2 templates in ``templates/email``, the stylesheet inlined by
premailer) and composes and seals the message; ``confirmation`` composes the email that
answers a sign-up; ``text`` cleans paper text (TeX, markup) for display; ``dkim`` signs;
``transport`` makes the transport the settings name. No email is composed anywhere else.

May import the base modules (``models``, ``settings``, ``tokens``) and ``transports``;
nothing of the stages around it (store, ranking) nor above it (subscribers, sending, apps).
"""

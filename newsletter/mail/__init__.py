"""Mail: the emails themselves. ``render`` turns an edition into an HTML and a plain-text part
(Jinja2 templates in ``templates/email``, the stylesheet inlined by premailer) and composes
and seals the message with its headers; ``text`` cleans paper text (TeX, markup) for display;
``dkim`` signs. No email is made anywhere else.

May import the base modules, ``ranking`` (for the picks it shows), ``store`` and
``transports`` (the message types they carry); nothing of a later stage (subscribers,
sending, the apps).
"""

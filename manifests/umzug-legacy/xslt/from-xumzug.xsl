<?xml version="1.0" encoding="UTF-8"?>
<!--
  XUmzug 1.0 -> umzug-legacy (outbound transform, applied on delivery to a client that is
  configured to receive the legacy format).

  Input:  a valid XUmzug 1.0 message (any namespace prefixes).
  Output: <Umzugsmeldung> in no namespace, valid against ../schema/umzug-legacy.xsd.

  umzug.Rueckmeldung.0101    -> Art Rueckmeldung
  umzug.Fortschreibung.0102  -> Art Fortschreibung
  umzug.Widerspruch.0103     -> Art Widerspruch
  any other root element     -> stops with <xsl:message terminate="yes">

  The inverse of ./to-xumzug.xsl: legacy -> XUmzug -> legacy gives back the same document
  (equal after canonicalisation, e.g. xmllint with option c14n; the stylesheet writes the
  line breaks and two-space indentation of the fixtures itself).
  XUmzug -> legacy -> XUmzug is lossy by design: the legacy format has no place for the produkt
  attributes, the directory service, code list attributes and code names (name), which
  to-xumzug.xsl fills in with fixed values. A Bezug on anything but a Rückmeldung (0101) cannot
  be expressed either and also stops the transform.

  XSLT 1.0 only (libxslt): no extension functions, no document(), no includes.
-->
<xsl:stylesheet version="1.0"
                xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
                xmlns:xumzug="urn:poststelle:demo:xumzug:1.0"
                xmlns:kopf="urn:poststelle:demo:kopf:1.0"
                exclude-result-prefixes="xumzug kopf">

   <xsl:output method="xml" encoding="UTF-8" indent="no"/>

   <xsl:template match="/">
      <xsl:apply-templates select="*"/>
   </xsl:template>

   <!-- Fallback for every root element without its own template below. -->
   <xsl:template match="/*" priority="-1">
      <xsl:message terminate="yes">umzug-legacy: Nachricht <xsl:value-of select="local-name()"/> (Namensraum '<xsl:value-of select="namespace-uri()"/>') ist im Altverfahren nicht abbildbar / message kind not supported by the legacy format; supported: umzug.Rueckmeldung.0101, umzug.Fortschreibung.0102, umzug.Widerspruch.0103 (urn:poststelle:demo:xumzug:1.0).</xsl:message>
   </xsl:template>

   <xsl:template match="/xumzug:umzug.Rueckmeldung.0101">
      <xsl:variable name="inhalt" select="xumzug:nachrichteninhalt"/>
      <Umzugsmeldung>
         <xsl:call-template name="kopf">
            <xsl:with-param name="art" select="'Rueckmeldung'"/>
         </xsl:call-template>
         <xsl:call-template name="feld">
            <xsl:with-param name="name" select="'Aktenzeichen'"/>
            <xsl:with-param name="wert" select="$inhalt/xumzug:aktenzeichen"/>
         </xsl:call-template>
         <xsl:apply-templates select="$inhalt/xumzug:person"/>
         <xsl:call-template name="feld">
            <xsl:with-param name="name" select="'Einzugsdatum'"/>
            <xsl:with-param name="wert" select="$inhalt/xumzug:einzugsdatum"/>
         </xsl:call-template>
         <xsl:apply-templates select="$inhalt/xumzug:neueAnschrift">
            <xsl:with-param name="p" select="'Neu'"/>
         </xsl:apply-templates>
         <xsl:apply-templates select="$inhalt/xumzug:bisherigeAnschrift">
            <xsl:with-param name="p" select="'Bisher'"/>
         </xsl:apply-templates>
         <xsl:text>&#10;</xsl:text>
      </Umzugsmeldung>
   </xsl:template>

   <xsl:template match="/xumzug:umzug.Fortschreibung.0102">
      <xsl:variable name="inhalt" select="xumzug:nachrichteninhalt"/>
      <Umzugsmeldung>
         <xsl:call-template name="kopf">
            <xsl:with-param name="art" select="'Fortschreibung'"/>
         </xsl:call-template>
         <xsl:apply-templates select="$inhalt/xumzug:bezug"/>
         <xsl:apply-templates select="$inhalt/xumzug:person"/>
         <xsl:call-template name="feld">
            <xsl:with-param name="name" select="'Ergebnis'"/>
            <xsl:with-param name="wert" select="$inhalt/xumzug:ergebnis/code"/>
         </xsl:call-template>
         <xsl:call-template name="feld">
            <xsl:with-param name="name" select="'Fortschreibungsdatum'"/>
            <xsl:with-param name="wert" select="$inhalt/xumzug:fortschreibungsdatum"/>
         </xsl:call-template>
         <xsl:call-template name="feld">
            <xsl:with-param name="name" select="'Hinweis'"/>
            <xsl:with-param name="wert" select="$inhalt/xumzug:hinweis"/>
         </xsl:call-template>
         <xsl:text>&#10;</xsl:text>
      </Umzugsmeldung>
   </xsl:template>

   <xsl:template match="/xumzug:umzug.Widerspruch.0103">
      <xsl:variable name="inhalt" select="xumzug:nachrichteninhalt"/>
      <Umzugsmeldung>
         <xsl:call-template name="kopf">
            <xsl:with-param name="art" select="'Widerspruch'"/>
         </xsl:call-template>
         <xsl:apply-templates select="$inhalt/xumzug:bezug"/>
         <xsl:call-template name="feld">
            <xsl:with-param name="name" select="'Grund'"/>
            <xsl:with-param name="wert" select="$inhalt/xumzug:grund/code"/>
         </xsl:call-template>
         <xsl:call-template name="feld">
            <xsl:with-param name="name" select="'Erlaeuterung'"/>
            <xsl:with-param name="wert" select="$inhalt/xumzug:erlaeuterung"/>
         </xsl:call-template>
         <xsl:text>&#10;</xsl:text>
      </Umzugsmeldung>
   </xsl:template>

   <!-- The header fields, in the order of the legacy schema. Context: the root element. -->
   <xsl:template name="kopf">
      <xsl:param name="art"/>
      <xsl:variable name="k" select="kopf:nachrichtenkopf.g2g"/>
      <xsl:call-template name="feld">
         <xsl:with-param name="name" select="'MeldungsID'"/>
         <xsl:with-param name="wert" select="$k/kopf:identifikation.nachricht/kopf:nachrichtenUUID"/>
      </xsl:call-template>
      <xsl:call-template name="feld">
         <xsl:with-param name="name" select="'Art'"/>
         <xsl:with-param name="wert" select="$art"/>
      </xsl:call-template>
      <xsl:call-template name="feld">
         <xsl:with-param name="name" select="'Erstellt'"/>
         <xsl:with-param name="wert" select="$k/kopf:identifikation.nachricht/kopf:erstellungszeitpunkt"/>
      </xsl:call-template>
      <xsl:call-template name="feld">
         <xsl:with-param name="name" select="'Absender'"/>
         <xsl:with-param name="wert" select="$k/kopf:autor/kopf:kennung"/>
      </xsl:call-template>
      <xsl:call-template name="feld">
         <xsl:with-param name="name" select="'AbsenderName'"/>
         <xsl:with-param name="wert" select="$k/kopf:autor/kopf:name"/>
      </xsl:call-template>
      <xsl:call-template name="feld">
         <xsl:with-param name="name" select="'Empfaenger'"/>
         <xsl:with-param name="wert" select="$k/kopf:leser/kopf:kennung"/>
      </xsl:call-template>
      <xsl:call-template name="feld">
         <xsl:with-param name="name" select="'EmpfaengerName'"/>
         <xsl:with-param name="wert" select="$k/kopf:leser/kopf:name"/>
      </xsl:call-template>
   </xsl:template>

   <xsl:template match="xumzug:bezug">
      <xsl:if test="normalize-space(xumzug:nachrichtentyp/code) != '0101'">
         <xsl:message terminate="yes">umzug-legacy: Bezug auf Nachrichtentyp <xsl:value-of select="normalize-space(xumzug:nachrichtentyp/code)"/> ist im Altverfahren nicht abbildbar (BezugID meint immer eine Rückmeldung 0101) / a reference to a message other than 0101 cannot be expressed in the legacy format.</xsl:message>
      </xsl:if>
      <xsl:call-template name="feld">
         <xsl:with-param name="name" select="'BezugID'"/>
         <xsl:with-param name="wert" select="xumzug:nachrichtenUUID"/>
      </xsl:call-template>
   </xsl:template>

   <xsl:template match="xumzug:person">
      <xsl:call-template name="feld">
         <xsl:with-param name="name" select="'Familienname'"/>
         <xsl:with-param name="wert" select="xumzug:familienname"/>
      </xsl:call-template>
      <xsl:call-template name="feld">
         <xsl:with-param name="name" select="'Geburtsname'"/>
         <xsl:with-param name="wert" select="xumzug:geburtsname"/>
      </xsl:call-template>
      <xsl:call-template name="feld">
         <xsl:with-param name="name" select="'Vornamen'"/>
         <xsl:with-param name="wert" select="xumzug:vornamen"/>
      </xsl:call-template>
      <xsl:call-template name="feld">
         <xsl:with-param name="name" select="'Geburtsdatum'"/>
         <xsl:with-param name="wert" select="xumzug:geburtsdatum"/>
      </xsl:call-template>
      <xsl:call-template name="feld">
         <xsl:with-param name="name" select="'Geburtsort'"/>
         <xsl:with-param name="wert" select="xumzug:geburtsort"/>
      </xsl:call-template>
      <xsl:call-template name="feld">
         <xsl:with-param name="name" select="'Geschlecht'"/>
         <xsl:with-param name="wert" select="xumzug:geschlecht/code"/>
      </xsl:call-template>
      <xsl:for-each select="xumzug:staatsangehoerigkeit">
         <xsl:call-template name="feld">
            <xsl:with-param name="name" select="'Staatsangehoerigkeit'"/>
            <xsl:with-param name="wert" select="code"/>
         </xsl:call-template>
      </xsl:for-each>
   </xsl:template>

   <!-- neueAnschrift / bisherigeAnschrift -> NeuStrasse ... / BisherStrasse ... -->
   <xsl:template match="xumzug:neueAnschrift | xumzug:bisherigeAnschrift">
      <xsl:param name="p"/>
      <xsl:call-template name="feld">
         <xsl:with-param name="name" select="concat($p, 'Strasse')"/>
         <xsl:with-param name="wert" select="xumzug:strasse"/>
      </xsl:call-template>
      <xsl:call-template name="feld">
         <xsl:with-param name="name" select="concat($p, 'Hausnummer')"/>
         <xsl:with-param name="wert" select="xumzug:hausnummer"/>
      </xsl:call-template>
      <xsl:call-template name="feld">
         <xsl:with-param name="name" select="concat($p, 'Zusatz')"/>
         <xsl:with-param name="wert" select="xumzug:zusatz"/>
      </xsl:call-template>
      <xsl:call-template name="feld">
         <xsl:with-param name="name" select="concat($p, 'PLZ')"/>
         <xsl:with-param name="wert" select="xumzug:postleitzahl"/>
      </xsl:call-template>
      <xsl:call-template name="feld">
         <xsl:with-param name="name" select="concat($p, 'Ort')"/>
         <xsl:with-param name="wert" select="xumzug:ort"/>
      </xsl:call-template>
      <xsl:call-template name="feld">
         <xsl:with-param name="name" select="concat($p, 'Gemeindeschluessel')"/>
         <xsl:with-param name="wert" select="xumzug:gemeindeschluessel"/>
      </xsl:call-template>
   </xsl:template>

   <!-- One legacy field on its own line: written only if $wert (a node or a string) is given;
        the text is copied unchanged. -->
   <xsl:template name="feld">
      <xsl:param name="name"/>
      <xsl:param name="wert"/>
      <xsl:if test="$wert">
         <xsl:text>&#10;  </xsl:text>
         <xsl:element name="{$name}"><xsl:value-of select="$wert"/></xsl:element>
      </xsl:if>
   </xsl:template>
</xsl:stylesheet>

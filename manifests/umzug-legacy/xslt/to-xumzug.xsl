<?xml version="1.0" encoding="UTF-8"?>
<!--
  umzug-legacy -> XUmzug 1.0 (inbound transform, applied on intake).

  Input:  <Umzugsmeldung> in no namespace, valid against ../schema/umzug-legacy.xsd.
  Output: one XUmzug 1.0 message (urn:poststelle:demo:xumzug:1.0), valid against
          xsd/xumzug-1.0/xumzug.xsd. The gateway then identifies and validates the output
          like any other input and reads the routing header (nachrichtenkopf.g2g) from it.

  Art            -> root element                 type code (= the root name's trailing digits)
  Rueckmeldung   -> umzug.Rueckmeldung.0101      0101
  Fortschreibung -> umzug.Fortschreibung.0102    0102
  Widerspruch    -> umzug.Widerspruch.0103       0103

  Header: MeldungsID -> nachrichtenUUID (unchanged), Erstellt -> erstellungszeitpunkt,
  Absender(Name) -> autor, Empfaenger(Name) -> leser (DVDV).
  Values are copied as they are (no trimming), so that ../xslt/from-xumzug.xsl gives back the
  same legacy document.

  Which fields an Art needs, and which it must not carry (they would be lost), the legacy schema
  cannot say; this stylesheet checks it and stops with <xsl:message terminate="yes"> naming the
  legacy field.

  XSLT 1.0 only (libxslt): no extension functions, no document(), no includes.
-->
<xsl:stylesheet version="1.0"
                xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
                xmlns:xumzug="urn:poststelle:demo:xumzug:1.0"
                xmlns:kopf="urn:poststelle:demo:kopf:1.0">

   <xsl:output method="xml" encoding="UTF-8" indent="yes"/>

   <!-- The software named in the message's produkt attributes: the legacy system. -->
   <xsl:variable name="produkt" select="'Umzug-Altverfahren'"/>
   <xsl:variable name="produkthersteller" select="'Poststelle-Projekt (Beispieladapter umzug-legacy)'"/>

   <!-- Field lists (space-separated legacy element names) per block, see the schema. -->
   <xsl:variable name="kopf-pflicht" select="'MeldungsID Art Erstellt Absender Empfaenger'"/>
   <xsl:variable name="person-pflicht" select="'Familienname Vornamen Geburtsdatum Geschlecht'"/>
   <xsl:variable name="person-alle" select="'Familienname Geburtsname Vornamen Geburtsdatum Geburtsort Geschlecht Staatsangehoerigkeit'"/>
   <xsl:variable name="umzug-pflicht" select="'Einzugsdatum NeuStrasse NeuPLZ NeuOrt NeuGemeindeschluessel BisherStrasse BisherPLZ BisherOrt BisherGemeindeschluessel'"/>
   <xsl:variable name="umzug-alle" select="'Einzugsdatum NeuStrasse NeuHausnummer NeuZusatz NeuPLZ NeuOrt NeuGemeindeschluessel BisherStrasse BisherHausnummer BisherZusatz BisherPLZ BisherOrt BisherGemeindeschluessel'"/>
   <xsl:variable name="fortschreibung-pflicht" select="'Ergebnis Fortschreibungsdatum'"/>
   <xsl:variable name="fortschreibung-alle" select="'Ergebnis Fortschreibungsdatum Hinweis'"/>
   <xsl:variable name="widerspruch-pflicht" select="'Grund'"/>
   <xsl:variable name="widerspruch-alle" select="'Grund Erlaeuterung'"/>

   <xsl:template match="/">
      <xsl:if test="not(Umzugsmeldung)">
         <xsl:message terminate="yes">umzug-legacy: Wurzelelement <xsl:value-of select="name(*)"/> ist keine Umzugsmeldung (expected root element Umzugsmeldung in no namespace).</xsl:message>
      </xsl:if>
      <xsl:apply-templates select="Umzugsmeldung"/>
   </xsl:template>

   <xsl:template match="Umzugsmeldung">
      <xsl:variable name="art" select="normalize-space(Art)"/>
      <xsl:call-template name="pflicht">
         <xsl:with-param name="felder" select="$kopf-pflicht"/>
      </xsl:call-template>

      <!-- Art -> type code; the root element name is built from both, so they always agree. -->
      <xsl:variable name="code">
         <xsl:choose>
            <xsl:when test="$art = 'Rueckmeldung'">0101</xsl:when>
            <xsl:when test="$art = 'Fortschreibung'">0102</xsl:when>
            <xsl:when test="$art = 'Widerspruch'">0103</xsl:when>
            <xsl:otherwise>
               <xsl:message terminate="yes">umzug-legacy: Feld Art hat den unbekannten Wert '<xsl:value-of select="Art"/>' (legacy field Art must be Rueckmeldung, Fortschreibung or Widerspruch).</xsl:message>
            </xsl:otherwise>
         </xsl:choose>
      </xsl:variable>
      <xsl:variable name="wurzel" select="concat('umzug.', $art, '.', $code)"/>

      <!-- Required and forbidden fields of this Art. -->
      <xsl:choose>
         <xsl:when test="$art = 'Rueckmeldung'">
            <xsl:call-template name="pflicht">
               <xsl:with-param name="felder" select="concat($person-pflicht, ' ', $umzug-pflicht)"/>
            </xsl:call-template>
            <xsl:call-template name="verboten">
               <xsl:with-param name="felder" select="concat('BezugID ', $fortschreibung-alle, ' ', $widerspruch-alle)"/>
            </xsl:call-template>
         </xsl:when>
         <xsl:when test="$art = 'Fortschreibung'">
            <xsl:call-template name="pflicht">
               <xsl:with-param name="felder" select="concat('BezugID ', $person-pflicht, ' ', $fortschreibung-pflicht)"/>
            </xsl:call-template>
            <xsl:call-template name="verboten">
               <xsl:with-param name="felder" select="concat('Aktenzeichen ', $umzug-alle, ' ', $widerspruch-alle)"/>
            </xsl:call-template>
         </xsl:when>
         <xsl:otherwise>
            <xsl:call-template name="pflicht">
               <xsl:with-param name="felder" select="concat('BezugID ', $widerspruch-pflicht)"/>
            </xsl:call-template>
            <xsl:call-template name="verboten">
               <xsl:with-param name="felder" select="concat('Aktenzeichen ', $person-alle, ' ', $umzug-alle, ' ', $fortschreibung-alle)"/>
            </xsl:call-template>
         </xsl:otherwise>
      </xsl:choose>

      <!-- A literal root element per Art; kopf is declared on it again so that libxslt writes
           both namespace declarations on the root element (and nowhere else). -->
      <xsl:choose>
         <xsl:when test="$code = '0101'">
            <xumzug:umzug.Rueckmeldung.0101 xmlns:kopf="urn:poststelle:demo:kopf:1.0"
                                            produkt="{$produkt}" produkthersteller="{$produkthersteller}"
                                           standard="XUmzug" version="1.0">
               <xsl:call-template name="nachricht">
                  <xsl:with-param name="art" select="$art"/>
                  <xsl:with-param name="code" select="$code"/>
                  <xsl:with-param name="wurzel" select="$wurzel"/>
               </xsl:call-template>
            </xumzug:umzug.Rueckmeldung.0101>
         </xsl:when>
         <xsl:when test="$code = '0102'">
            <xumzug:umzug.Fortschreibung.0102 xmlns:kopf="urn:poststelle:demo:kopf:1.0"
                                              produkt="{$produkt}" produkthersteller="{$produkthersteller}"
                                              standard="XUmzug" version="1.0">
               <xsl:call-template name="nachricht">
                  <xsl:with-param name="art" select="$art"/>
                  <xsl:with-param name="code" select="$code"/>
                  <xsl:with-param name="wurzel" select="$wurzel"/>
               </xsl:call-template>
            </xumzug:umzug.Fortschreibung.0102>
         </xsl:when>
         <xsl:otherwise>
            <xumzug:umzug.Widerspruch.0103 xmlns:kopf="urn:poststelle:demo:kopf:1.0"
                                           produkt="{$produkt}" produkthersteller="{$produkthersteller}"
                                           standard="XUmzug" version="1.0">
               <xsl:call-template name="nachricht">
                  <xsl:with-param name="art" select="$art"/>
                  <xsl:with-param name="code" select="$code"/>
                  <xsl:with-param name="wurzel" select="$wurzel"/>
               </xsl:call-template>
            </xumzug:umzug.Widerspruch.0103>
         </xsl:otherwise>
      </xsl:choose>
   </xsl:template>

   <!-- Header and content of the message. Context: Umzugsmeldung. -->
   <xsl:template name="nachricht">
      <xsl:param name="art"/>
      <xsl:param name="code"/>
      <xsl:param name="wurzel"/>
      <kopf:nachrichtenkopf.g2g>
         <kopf:identifikation.nachricht>
            <kopf:nachrichtenUUID><xsl:value-of select="MeldungsID"/></kopf:nachrichtenUUID>
            <kopf:nachrichtentyp listURI="urn:poststelle:demo:codeliste:xumzug-nachrichten" listVersionID="1.0">
               <code><xsl:value-of select="$code"/></code>
               <name><xsl:value-of select="$wurzel"/></name>
            </kopf:nachrichtentyp>
            <kopf:erstellungszeitpunkt><xsl:value-of select="Erstellt"/></kopf:erstellungszeitpunkt>
         </kopf:identifikation.nachricht>
         <kopf:leser>
            <xsl:call-template name="behoerde">
               <xsl:with-param name="kennung" select="Empfaenger"/>
               <xsl:with-param name="name" select="EmpfaengerName"/>
            </xsl:call-template>
         </kopf:leser>
         <kopf:autor>
            <xsl:call-template name="behoerde">
               <xsl:with-param name="kennung" select="Absender"/>
               <xsl:with-param name="name" select="AbsenderName"/>
            </xsl:call-template>
         </kopf:autor>
      </kopf:nachrichtenkopf.g2g>
      <xumzug:nachrichteninhalt>
         <xsl:choose>
            <xsl:when test="$art = 'Rueckmeldung'">
               <xsl:if test="Aktenzeichen">
                  <xumzug:aktenzeichen><xsl:value-of select="Aktenzeichen"/></xumzug:aktenzeichen>
               </xsl:if>
               <xsl:call-template name="person"/>
               <xumzug:einzugsdatum><xsl:value-of select="Einzugsdatum"/></xumzug:einzugsdatum>
               <xumzug:neueAnschrift>
                  <xsl:call-template name="anschrift">
                     <xsl:with-param name="p" select="'Neu'"/>
                  </xsl:call-template>
               </xumzug:neueAnschrift>
               <xumzug:bisherigeAnschrift>
                  <xsl:call-template name="anschrift">
                     <xsl:with-param name="p" select="'Bisher'"/>
                  </xsl:call-template>
               </xumzug:bisherigeAnschrift>
            </xsl:when>
            <xsl:when test="$art = 'Fortschreibung'">
               <xsl:call-template name="bezug"/>
               <xsl:call-template name="person"/>
               <xumzug:ergebnis listURI="urn:poststelle:demo:codeliste:fortschreibungsergebnis" listVersionID="1.0">
                  <code><xsl:value-of select="Ergebnis"/></code>
               </xumzug:ergebnis>
               <xumzug:fortschreibungsdatum><xsl:value-of select="Fortschreibungsdatum"/></xumzug:fortschreibungsdatum>
               <xsl:if test="Hinweis">
                  <xumzug:hinweis><xsl:value-of select="Hinweis"/></xumzug:hinweis>
               </xsl:if>
            </xsl:when>
            <xsl:otherwise>
               <xsl:call-template name="bezug"/>
               <xumzug:grund listURI="urn:poststelle:demo:codeliste:widerspruchsgrund" listVersionID="1.0">
                  <code><xsl:value-of select="Grund"/></code>
               </xumzug:grund>
               <xsl:if test="Erlaeuterung">
                  <xumzug:erlaeuterung><xsl:value-of select="Erlaeuterung"/></xumzug:erlaeuterung>
               </xsl:if>
            </xsl:otherwise>
         </xsl:choose>
      </xumzug:nachrichteninhalt>
   </xsl:template>

   <!-- An authority in the DVDV directory (leser or autor). -->
   <xsl:template name="behoerde">
      <xsl:param name="kennung"/>
      <xsl:param name="name"/>
      <kopf:verzeichnisdienst listURI="urn:xoev-de:kosit:codeliste:verzeichnisdienst" listVersionID="3">
         <code>DVDV</code>
      </kopf:verzeichnisdienst>
      <kopf:kennung><xsl:value-of select="$kennung"/></kopf:kennung>
      <xsl:if test="$name">
         <kopf:name><xsl:value-of select="$name"/></kopf:name>
      </xsl:if>
   </xsl:template>

   <!-- Fortschreibung and Widerspruch always answer a Rückmeldung (0101). -->
   <xsl:template name="bezug">
      <xumzug:bezug>
         <xumzug:nachrichtenUUID><xsl:value-of select="BezugID"/></xumzug:nachrichtenUUID>
         <xumzug:nachrichtentyp listURI="urn:poststelle:demo:codeliste:xumzug-nachrichten" listVersionID="1.0">
            <code>0101</code>
         </xumzug:nachrichtentyp>
      </xumzug:bezug>
   </xsl:template>

   <xsl:template name="person">
      <xumzug:person>
         <xumzug:familienname><xsl:value-of select="Familienname"/></xumzug:familienname>
         <xsl:if test="Geburtsname">
            <xumzug:geburtsname><xsl:value-of select="Geburtsname"/></xumzug:geburtsname>
         </xsl:if>
         <xumzug:vornamen><xsl:value-of select="Vornamen"/></xumzug:vornamen>
         <xumzug:geburtsdatum><xsl:value-of select="Geburtsdatum"/></xumzug:geburtsdatum>
         <xsl:if test="Geburtsort">
            <xumzug:geburtsort><xsl:value-of select="Geburtsort"/></xumzug:geburtsort>
         </xsl:if>
         <xumzug:geschlecht listURI="urn:poststelle:demo:codeliste:geschlecht" listVersionID="1.0">
            <code><xsl:value-of select="Geschlecht"/></code>
         </xumzug:geschlecht>
         <xsl:for-each select="Staatsangehoerigkeit">
            <xumzug:staatsangehoerigkeit listURI="urn:poststelle:demo:codeliste:staatsangehoerigkeit" listVersionID="1.0">
               <code><xsl:value-of select="."/></code>
            </xumzug:staatsangehoerigkeit>
         </xsl:for-each>
      </xumzug:person>
   </xsl:template>

   <!-- The fields NeuStrasse ... or BisherStrasse ... ($p = 'Neu' or 'Bisher'). -->
   <xsl:template name="anschrift">
      <xsl:param name="p"/>
      <xumzug:strasse><xsl:value-of select="*[name() = concat($p, 'Strasse')]"/></xumzug:strasse>
      <xsl:if test="*[name() = concat($p, 'Hausnummer')]">
         <xumzug:hausnummer><xsl:value-of select="*[name() = concat($p, 'Hausnummer')]"/></xumzug:hausnummer>
      </xsl:if>
      <xsl:if test="*[name() = concat($p, 'Zusatz')]">
         <xumzug:zusatz><xsl:value-of select="*[name() = concat($p, 'Zusatz')]"/></xumzug:zusatz>
      </xsl:if>
      <xumzug:postleitzahl><xsl:value-of select="*[name() = concat($p, 'PLZ')]"/></xumzug:postleitzahl>
      <xumzug:ort><xsl:value-of select="*[name() = concat($p, 'Ort')]"/></xumzug:ort>
      <xumzug:gemeindeschluessel><xsl:value-of select="*[name() = concat($p, 'Gemeindeschluessel')]"/></xumzug:gemeindeschluessel>
   </xsl:template>

   <!-- Stops unless every field in $felder (space-separated) is present and not blank. -->
   <xsl:template name="pflicht">
      <xsl:param name="felder"/>
      <xsl:variable name="rest" select="normalize-space($felder)"/>
      <xsl:if test="$rest != ''">
         <xsl:variable name="feld">
            <xsl:choose>
               <xsl:when test="contains($rest, ' ')"><xsl:value-of select="substring-before($rest, ' ')"/></xsl:when>
               <xsl:otherwise><xsl:value-of select="$rest"/></xsl:otherwise>
            </xsl:choose>
         </xsl:variable>
         <xsl:if test="not(*[name() = $feld][normalize-space() != ''])">
            <xsl:message terminate="yes">umzug-legacy: Pflichtfeld <xsl:value-of select="$feld"/> fehlt oder ist leer (Art <xsl:value-of select="normalize-space(Art)"/>, MeldungsID <xsl:value-of select="normalize-space(MeldungsID)"/>) / required legacy field <xsl:value-of select="$feld"/> is missing or empty.</xsl:message>
         </xsl:if>
         <xsl:call-template name="pflicht">
            <xsl:with-param name="felder" select="substring-after($rest, ' ')"/>
         </xsl:call-template>
      </xsl:if>
   </xsl:template>

   <!-- Stops if any field in $felder is present: this Art has no place for it in XUmzug. -->
   <xsl:template name="verboten">
      <xsl:param name="felder"/>
      <xsl:variable name="rest" select="normalize-space($felder)"/>
      <xsl:if test="$rest != ''">
         <xsl:variable name="feld">
            <xsl:choose>
               <xsl:when test="contains($rest, ' ')"><xsl:value-of select="substring-before($rest, ' ')"/></xsl:when>
               <xsl:otherwise><xsl:value-of select="$rest"/></xsl:otherwise>
            </xsl:choose>
         </xsl:variable>
         <xsl:if test="*[name() = $feld]">
            <xsl:message terminate="yes">umzug-legacy: Feld <xsl:value-of select="$feld"/> ist bei Art <xsl:value-of select="normalize-space(Art)"/> nicht vorgesehen (MeldungsID <xsl:value-of select="normalize-space(MeldungsID)"/>) / legacy field <xsl:value-of select="$feld"/> is not allowed for this Art.</xsl:message>
         </xsl:if>
         <xsl:call-template name="verboten">
            <xsl:with-param name="felder" select="substring-after($rest, ' ')"/>
         </xsl:call-template>
      </xsl:if>
   </xsl:template>
</xsl:stylesheet>
